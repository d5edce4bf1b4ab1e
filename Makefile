# relayd build entry points. Everything goes through the go tool; this file
# only names the release artefacts. Outputs land in packaging/out/.
#
#   make build            $(OUT)/relayd, version stamped in
#   make deb              packaging/out/relayd_VERSION_amd64.deb (dpkg-deb)
#   make image            packaging/out/relayd-appliance.qcow2 (+ .vmlinuz,
#                         .initrd for qemu direct kernel boot); needs root
#   make test-deb         test/appliance-deb.sh (root: debootstrap, dpkg -i)
#   make test-image       test/appliance-image.sh (root, long: qemu TCG boot)

# Computed once per make run (a later commit must not rename the .deb
# between the deb and image steps).
ifeq ($(origin VERSION),undefined)
VERSION := $(shell packaging/version.sh)
endif
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
