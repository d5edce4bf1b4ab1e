package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"relayd/internal/sysexits"
)

// runPasswd reads a password from stdin (one line) and prints its bcrypt
// hash for a [[users]] password_hash.
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: relayd passwd < password-file   (prints a bcrypt hash)")
		return sysexits.Usage
	}
	fmt.Fprint(stderr, "Password (one line on stdin): ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "\nrelayd passwd: empty password")
		return sysexits.Usage
	}
	_ = err
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), 12)
	if err != nil {
		fmt.Fprintf(stderr, "\nrelayd passwd: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stderr)
	fmt.Fprintln(stdout, string(hash))
	return sysexits.OK
}
