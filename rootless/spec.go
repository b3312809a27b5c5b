package rootless

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// IDMap is one line of /proc/PID/uid_map or gid_map.
type IDMap struct {
	ContainerID int `json:"container_id"`
	HostID      int `json:"host_id"`
	Size        int `json:"size"`
}

// BindMount is one -v host:ctr[:ro].
type BindMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ImageConfig is the part of an OCI image config a run uses.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// ExposedPorts are EXPOSE's "80/tcp" entries, for -P.
	ExposedPorts []string `json:"exposed_ports,omitempty"`
}

// Spec is what the namespace child and the container init need. It is
// resolved completely by the parent, so the re-execs make no decisions
// that could fail late for lack of host information.
type Spec struct {
	Mode string `json:"mode"` // modeRun or modeRemove

	ID           string `json:"id"`
	ContainerDir string `json:"container_dir"`
	// Lowers are top first; the init layer is Lowers[0].
	Lowers   []string `json:"lowers"`
	Upper    string   `json:"upper"`
	Work     string   `json:"work"`
	Rootfs   string   `json:"rootfs"` // mountpoint of the union, in the runtime dir
	ReadOnly bool     `json:"read_only,omitempty"`
	Hostname string   `json:"hostname"`
	NetNS    bool     `json:"netns,omitempty"` // a fresh network namespace (bring lo up)
	Net      []byte   `json:"net,omitempty"`   // netns.ChildConfig from the network's Attach

	Mounts     []BindMount `json:"mounts,omitempty"`
	Args       []string    `json:"args"`
	Env        []string    `json:"env"`
	WorkingDir string      `json:"working_dir"`
	User       string      `json:"user,omitempty"` // user[:group], resolved inside
	Caps       []string    `json:"caps"`
	Seccomp    bool        `json:"seccomp"`
	Init       bool        `json:"init,omitempty"`
	TTY        bool        `json:"tty,omitempty"`
	Remove     bool        `json:"remove,omitempty"` // --rm: child deletes ContainerDir
	Cgroup     bool        `json:"cgroup,omitempty"` // in its own cgroup: mount it at /sys/fs/cgroup
	// ServerCgroup is where the child moves once init is born in the
	// container's cgroup (see Cgroup.Outside).
	ServerCgroup string `json:"server_cgroup,omitempty"`
	RemovePath   string `json:"remove_path,omitempty"`
}

const (
	modeRun    = "run"
	modeRemove = "remove"
)

// Re-exec entry points. cmd/strata dispatches them in main (reexecEntries).
const (
	EnvChild = "_STRATA_ROOTLESS_CHILD"
	EnvInit  = "_STRATA_ROOTLESS_INIT"
)

const (
	specFD  = 3
	errorFD = 4
)

func readSpec() (*Spec, error) {
	f := os.NewFile(specFD, "spec")
	defer f.Close()
	var s Spec
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return nil, fmt.Errorf("read spec from parent: %w", err)
	}
	return &s, nil
}

func writeSpec(w io.WriteCloser, s *Spec) error {
	defer w.Close()
	if err := json.NewEncoder(w).Encode(s); err != nil {
		return fmt.Errorf("send spec to child: %w", err)
	}
	return nil
}

// setupError is what a re-exec reports on the error pipe instead of running
// the command.
type setupError struct {
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}

// ExitError is a failure with a Docker-style exit status: 125 for strata's
// own errors, 126 when the command cannot be executed, 127 when it is not
// found, 128+N when signal N ended it. The CLI exits with Code; a nil Err
// exits silently, because whoever failed has already said why.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

func exitErr(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// reportError writes err on the error pipe so the parent prints it once.
// It returns the exit code the re-exec should use.
func reportError(err error) int {
	code := 125
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	if errPipe != nil {
		json.NewEncoder(errPipe).Encode(setupError{Code: code, Msg: err.Error()})
	}
	return code
}

// errPipe is fd 4 in a re-exec, nil once closed, so that a late error can
// never be written into whatever file reuses the number.
var errPipe *os.File

func openErrPipe() {
	// Close-on-exec: a successful exec of the command is what tells the
	// parent (EOF) that setup is over.
	syscall.CloseOnExec(errorFD)
	errPipe = os.NewFile(errorFD, "errors")
}

func closeErrPipe() {
	if errPipe != nil {
		errPipe.Close()
		errPipe = nil
	}
}
