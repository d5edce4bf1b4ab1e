// Package applianceimage is the boot test of the relayd appliance image
// (issue 9). It has no API: its test boots the image built by `make image`
// under qemu-system-x86_64 (TCG software emulation) with a configuration
// drive, a test smarthost on the host (reached from the guest at 10.0.2.2,
// QEMU user networking) and a host port forwarded to the guest's port 25,
// sends one message in and checks that it reaches the smarthost over
// STARTTLS with AUTH, DKIM-signed with the key the guest generated on first
// boot (its DNS record is read from the serial console).
//
// The test runs only when RELAYD_IMAGE_DIR names the directory holding
// relayd-appliance.qcow2, .vmlinuz and .initrd; test/appliance-image.sh
// builds the image and sets it. It takes minutes, so it stays out of the
// default suite. RELAYD_CONSOLE_LOG=FILE keeps the guest's serial console.
package applianceimage
