package rootless

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// With -t the pseudo-terminal comes from the container's own devpts
// instance, as runc's console socket does it: init opens /dev/ptmx inside,
// keeps the slave as its stdio and controlling terminal, and sends the
// master to strata over a unix socket (fd 5 in the re-execs). So `tty`
// inside names a /dev/pts/N that exists there.

const consoleFD = 5

// setupConsole runs in init after pivot_root: it makes the pty, sends the
// master to the parent and makes the slave stdin, stdout, stderr and the
// controlling terminal. The slave belongs to the user the command runs as.
func setupConsole(u execUser) error {
	sock := os.NewFile(consoleFD, "console")
	defer sock.Close()
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	// TIOCGPTPEER opens the slave from the master, immune to a swapped
	// /dev/pts; its argument is the open flags.
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY))
	if e != 0 {
		return fmt.Errorf("open pty slave: %w", e)
	}
	slave := int(r)
	if err := unix.Fchown(slave, u.uid, u.gid); err != nil {
		return fmt.Errorf("chown pty slave: %w", err)
	}
	if err := unix.Sendmsg(int(sock.Fd()), []byte{0}, unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("send pty master to strata: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("pty slave to fd %d: %w", fd, err)
		}
	}
	unix.Close(slave)
	// init called setsid at clone time; now the slave becomes its terminal.
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	return nil
}

// receiveConsole waits for the master on sock. It returns nil, nil when
// the container gave up before sending one (its setup error comes on the
// error pipe).
func receiveConsole(sock *os.File) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	if n == 0 && oobn == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive pty master: bad control message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive pty master: no descriptor")
	}
	return os.NewFile(uintptr(fds[0]), "ptmx"), nil
}

// consolePair is the socket pair strata and init talk over.
func consolePair() (parentEnd, childEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "console"), nil
}

// relayTerminal connects strata's terminal to the container's pty master:
// its output always, strata's input with stdin, and the window size as it
// changes; raw mode while strata's stdin is a terminal. done closes when
// the container's output ends; stop restores the terminal.
func relayTerminal(ptmx *os.File, stdin bool) (done <-chan struct{}, stop func()) {
	restore := func() {}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80})
	} else {
		pty.InheritSize(os.Stdin, ptmx)
		if stdin {
			if st, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
				restore = func() { term.Restore(int(os.Stdin.Fd()), st) }
			}
		}
	}
	if stdin {
		go io.Copy(ptmx, os.Stdin)
	}
	out := make(chan struct{})
	go func() { io.Copy(os.Stdout, ptmx); close(out) }()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			pty.InheritSize(os.Stdin, ptmx)
		}
	}()
	return out, func() {
		signal.Stop(winch)
		restore()
	}
}
