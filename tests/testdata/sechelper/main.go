// Command sechelper makes one system call the default seccomp filter of
// `strata run` blocks and prints the outcome, for tests/run_test.go. It is
// built static and copied into the test rootfs (busybox has no such call).
// `sechelper status` prints its own ids and capabilities instead, for a
// copy installed setuid root.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
	case "nr":
		// A number no kernel table has: the filter must answer it with an
		// errno, not kill the process.
		nr, _ := strconv.Atoi(os.Args[2])
		if _, _, e := syscall.RawSyscall(uintptr(nr), 0, 0, 0); e != 0 {
			err = e
		}
		os.Args[1] += " " + os.Args[2]
	case "status":
		status()
		return
	default:
		fmt.Fprintln(os.Stderr, "usage: sechelper add_key|clone-userns|clone|nr N|status")
		os.Exit(2)
	}
	if err != nil {
		fmt.Println(os.Args[1]+":", err)
		os.Exit(1)
	}
	fmt.Println(os.Args[1] + ": ok")
}

// status prints one line: euid=N and the Cap* fields of /proc/self/status.
func status() {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	defer f.Close()
	out := []string{"euid=" + strconv.Itoa(os.Geteuid())}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.HasPrefix(k, "Cap") {
			out = append(out, k+"="+strings.TrimSpace(v))
		}
	}
	fmt.Println(strings.Join(out, " "))
}
