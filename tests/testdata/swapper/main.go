// Command swapper is the hostile container process of tests/commit_test.go.
// It makes pairs /race/dN (a dir holding a decoy id_rsa) and /race/lN (a
// symlink to TARGET, a host path) and exchanges the two names of each pair
// with renameat2(RENAME_EXCHANGE) in a tight loop, one goroutine per pair,
// so that a strata that walks the upper by path meets a dir at one moment
// and, at the next, follows the symlink into the host dir. It prints
// "ready" once the pairs exist. Built static, copied into the test rootfs.
package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: swapper TARGET PAIRS")
		os.Exit(2)
	}
	target := os.Args[1]
	pairs, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 0; i < pairs; i++ {
		d, l := fmt.Sprintf("/race/d%d", i), fmt.Sprintf("/race/l%d", i)
		if err := os.MkdirAll(d, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := os.WriteFile(d+"/id_rsa", []byte("decoy\n"), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := os.Symlink(target, l); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	for i := 0; i < pairs; i++ {
		d, l := fmt.Sprintf("/race/d%d", i), fmt.Sprintf("/race/l%d", i)
		go func() {
			for {
				if err := unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, l, unix.RENAME_EXCHANGE); err != nil {
					fmt.Fprintln(os.Stderr, "exchange:", err)
					os.Exit(1)
				}
			}
		}()
	}
	select {}
}
