// Package applianceimage is the boot test of the relayd appliance image
// (issue 9). It has no API: its test boots the image built by `make image`
// under qemu-system-x86_64 (TCG software emulation) with the configuration
// drive of docs/appliance.md (built from the doc's text), QEMU user
// networking with restrict=on and two explicit forwards (a free host port
// to the guest's port 25; the guest's 10.0.2.100:587 to a test smarthost on
// the host), sends one message in and checks that it reaches the smarthost over
// STARTTLS with AUTH, DKIM-signed with the key the guest generated on first
// boot (its DNS record is read from the serial console).
//
// The test runs only when RELAYD_IMAGE_DIR names the directory holding
// relayd-appliance.qcow2, .vmlinuz and .initrd; test/appliance-image.sh
// builds the image and sets it. It takes minutes, so it stays out of the
// default suite. RELAYD_CONSOLE_LOG=FILE keeps the guest's serial console.
package applianceimage
