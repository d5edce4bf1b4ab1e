# relayd build entry points. Everything goes through the go tool; this file
# only names the release artefacts. Outputs land in packaging/out/.
#
#   make build            $(OUT)/relayd, version stamped in
#   make deb              packaging/out/relayd_VERSION_amd64.deb (dpkg-deb)
#   make image            packaging/out/relayd-appliance_VERSION.qcow2 (+ vmlinuz,
#                         initrd.img for qemu direct kernel boot); needs root
#   make test-deb         test/appliance-deb.sh (root: debootstrap, dpkg -i)
#   make test-image       test/appliance-image.sh (root, long: qemu TCG boot)

VERSION ?= $(shell packaging/version.sh)
ARCH    ?= amd64
OUT     ?= packaging/out
GO      ?= go

.PHONY: build deb image test test-deb test-image clean

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(OUT)/relayd ./cmd/relayd

deb:
	ARCH=$(ARCH) packaging/build-deb.sh "$(VERSION)" "$(OUT)"

image: deb
	packaging/image/build-image.sh "$(OUT)/relayd_$(VERSION)_$(ARCH).deb" "$(OUT)"

test:
	$(GO) test -race ./...

test-deb:
	test/appliance-deb.sh

test-image:
	test/appliance-image.sh

clean:
	rm -rf "$(OUT)"
