// Package harness holds what strata's tests share: the built binary, the
// unprivileged test user, strict skips and the check that no mount is left.
//
// Tests run as root (CI does) and drop to the test user that tests/setup.sh
// creates when they need an ordinary user; nothing here is mocked.
package harness

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/strata-run/strata/unionfs/mounts"
)

// Skip skips t because the host lacks something, and fails instead when
// STRATA_TEST_STRICT=1 (CI), where every test must run.
func Skip(t testing.TB, missing string) {
	t.Helper()
	if os.Getenv("STRATA_TEST_STRICT") == "1" {
		t.Fatalf("cannot run (STRATA_TEST_STRICT=1 forbids skipping): %s", missing)
	}
	t.Skip("host lacks: " + missing)
}

// RequireRoot skips unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "root (run the tests as root; they drop privileges themselves)")
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// RepoRoot is the top of the source tree.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds cmd/strata once per test process into a world-readable
// temporary dir (the test user must be able to run it) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "strata-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		binPath = filepath.Join(dir, "strata")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/strata")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildFailure{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build strata: %v", buildErr)
	}
	return binPath
}

type buildFailure struct {
	out string
	err error
}

func (b *buildFailure) Error() string { return b.err.Error() + "\n" + b.out }

// TestUser is the unprivileged user tests/setup.sh creates.
type TestUser struct {
	Name     string
	UID, GID int
	Home     string
}

// User returns the unprivileged test user, skipping (strictly) when
// tests/setup.sh has not created it.
func User(t testing.TB) TestUser {
	t.Helper()
	RequireRoot(t)
	name := os.Getenv("STRATA_TEST_USER")
	if name == "" {
		name = "stratatest"
	}
	u, err := user.Lookup(name)
	if err != nil {
		Skip(t, "test user "+name+" (run ./tests/setup.sh user)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return TestUser{Name: name, UID: uid, GID: gid, Home: u.HomeDir}
}

// Command returns cmd to run as the test user, with a clean login-like
// environment (HOME, USER, XDG_RUNTIME_DIR) and no inherited root variables.
func (u TestUser) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("setpriv", append([]string{
		"--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(u.GID), "--init-groups",
		"--", name}, args...)...)
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"XDG_RUNTIME_DIR=/run/user/" + strconv.Itoa(u.UID),
	}
	if v, ok := os.LookupEnv("STRATA_TEST_STRICT"); ok {
		cmd.Env = append(cmd.Env, "STRATA_TEST_STRICT="+v)
	}
	return cmd
}

// Mounts returns the mount points of FUSE and overlay mounts now on the host.
func Mounts() []string {
	ms, _ := mounts.Read()
	var out []string
	for _, m := range ms {
		if m.FSType == "overlay" || strings.HasPrefix(m.FSType, "fuse") {
			out = append(out, m.Point)
		}
	}
	return out
}

// NoLeftoverMounts registers a cleanup that fails t if a FUSE or overlay
// mount appeared under dir during the test, and lazily unmounts it.
func NoLeftoverMounts(t testing.TB, dir string) {
	t.Helper()
	t.Cleanup(func() {
		for _, m := range Mounts() {
			if m == dir || strings.HasPrefix(m, dir+"/") {
				t.Errorf("mount left behind: %s", m)
				exec.Command("umount", "-l", m).Run()
			}
		}
	})
}
