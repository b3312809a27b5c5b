// Command sechelper makes one system call the default seccomp filter of
// `strata run` blocks and prints the outcome, for tests/run_test.go. It is
// built static and copied into the test rootfs (busybox has no such call).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"unsafe"
)

func main() {
	var err error
	switch os.Args[1] {
	case "add_key":
		typ, _ := syscall.BytePtrFromString("user")
		desc, _ := syscall.BytePtrFromString("strata-test")
		keyring := -3 // KEY_SPEC_SESSION_KEYRING
		_, _, e := syscall.Syscall6(syscall.SYS_ADD_KEY, uintptr(unsafe.Pointer(typ)), uintptr(unsafe.Pointer(desc)), 0, 0, uintptr(keyring), 0)
		if e != 0 {
			err = e
		}
	case "clone-userns":
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		err = cmd.Run()
	case "clone":
		err = exec.Command("/bin/true").Run()
	default:
		fmt.Fprintln(os.Stderr, "usage: sechelper add_key|clone-userns|clone")
		os.Exit(2)
	}
	if err != nil {
		fmt.Println(os.Args[1]+":", err)
		os.Exit(1)
	}
	fmt.Println(os.Args[1] + ": ok")
}
