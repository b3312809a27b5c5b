package rootless

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// How a process strata waits for ends, and which signals reach it: the
// parent, the namespace child and init each supervise one process, and all
// three report and relay alike.

// forwarded are the signals strata passes on to the container. SIGKILL and
// SIGSTOP cannot be caught; a SIGKILL of strata still ends the container,
// through Pdeathsig.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT, syscall.SIGALRM}

// signalRelay catches the forwarded signals from the moment it is made, so
// none is lost while the process it relays to is being started.
type signalRelay chan os.Signal

func catchForwarded() signalRelay {
	r := make(signalRelay, 16)
	signal.Notify(r, forwarded...)
	return r
}

// to relays every caught signal to p until stop.
func (r signalRelay) to(p *os.Process) {
	go func() {
		for s := range r {
			p.Signal(s)
		}
	}()
}

// stop ends the relay; the default dispositions come back.
func (r signalRelay) stop() {
	signal.Stop(r)
	close(r)
}

// exitStatus is the code strata reports for a process that ended with ws:
// its exit status, or 128+N when signal N killed it, as a shell does.
func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// waitCode is exitStatus for the error of exec.Cmd.Wait; an error that is
// no exit at all is strata's own (125).
func waitCode(werr error, what string) (int, error) {
	if werr == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) {
		return 125, fmt.Errorf("wait for %s: %w", what, werr)
	}
	return exitStatus(ee.Sys().(syscall.WaitStatus)), nil
}

// exitCodeOf is the code an error of strata's own ends the run with: an
// ExitError's, else 125.
func exitCodeOf(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 125
}
