package rootless

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultCapMask(t *testing.T) {
	// The value Docker's default set shows in /proc/PID/status.
	if got := capMask(DefaultCaps); got != 0xa80425fb {
		t.Errorf("default capability mask %#x, want 0xa80425fb", got)
	}
	caps, err := CapSet([]string{"cap_sys_admin"}, []string{"NET_RAW", "MKNOD"})
	if err != nil {
		t.Fatal(err)
	}
	if !hasCap(caps, "SYS_ADMIN") || hasCap(caps, "NET_RAW") || hasCap(caps, "MKNOD") || !hasCap(caps, "CHOWN") {
		t.Errorf("--cap-add sys_admin --cap-drop NET_RAW,MKNOD: %v", caps)
	}
	if caps, _ := CapSet([]string{"KILL"}, []string{"ALL"}); !reflect.DeepEqual(caps, []string{"KILL"}) {
		t.Errorf("--cap-drop ALL --cap-add KILL: %v", caps)
	}
	// Docker's order: --cap-add ALL takes the drops from everything.
	if caps, _ := CapSet([]string{"ALL"}, []string{"SYS_ADMIN"}); len(caps) != len(capNames)-1 || hasCap(caps, "SYS_ADMIN") {
		t.Errorf("--cap-add ALL --cap-drop SYS_ADMIN: %v", caps)
	}
	if caps, _ := CapSet([]string{"NET_RAW"}, []string{"NET_RAW"}); !hasCap(caps, "NET_RAW") {
		t.Errorf("--cap-add NET_RAW --cap-drop NET_RAW: %v", caps)
	}
	if _, err := CapSet([]string{"BOGUS"}, nil); err == nil || !strings.Contains(err.Error(), "BOGUS") {
		t.Errorf("unknown capability: %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"default"}}
	ep := []string{"/other"}
	empty := []string{}
	for _, c := range []struct {
		cfg  ImageConfig
		ep   *[]string
		args []string
		want []string
	}{
		{img, nil, nil, []string{"/entry", "-x", "default"}},
		{img, nil, []string{"a", "b"}, []string{"/entry", "-x", "a", "b"}},
		{img, &ep, nil, []string{"/other"}},
		{img, &ep, []string{"a"}, []string{"/other", "a"}},
		{img, &empty, []string{"sh"}, []string{"sh"}},
		{ImageConfig{Cmd: []string{"sh"}}, nil, nil, []string{"sh"}},
		{ImageConfig{}, nil, nil, []string{}},
	} {
		if got := CommandLine(c.cfg, c.ep, c.args); !reflect.DeepEqual(got, c.want) {
			t.Errorf("CommandLine(%+v, %v, %v) = %q, want %q", c.cfg, c.ep, c.args, got, c.want)
		}
	}
}

func TestBuildEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "env")
	os.WriteFile(file, []byte("# c\nA=file\n\nB=file\n"), 0o644)
	t.Setenv("STRATA_TEST_FROM_HOST", "host")
	env, err := buildEnv(Options{
		Config:   ImageConfig{Env: []string{"PATH=/image/bin", "A=image", "C=image"}},
		EnvFiles: []string{file},
		Env:      []string{"B=flag", "STRATA_TEST_FROM_HOST", "STRATA_TEST_UNSET_VAR"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=/image/bin", "A=file", "C=image", "B=flag", "STRATA_TEST_FROM_HOST=host"}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
	if _, err := buildEnv(Options{EnvFiles: []string{filepath.Join(dir, "missing")}}); err == nil || !strings.Contains(err.Error(), "--env-file") {
		t.Errorf("missing env file: %v", err)
	}
}

func TestParseVolumes(t *testing.T) {
	dir := t.TempDir()
	ms, err := ParseVolumes([]string{dir + ":/a", dir + ":/b/:ro", dir + ":/c:rw"})
	if err != nil {
		t.Fatal(err)
	}
	want := []BindMount{{dir, "/a", false}, {dir, "/b", true}, {dir, "/c", false}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("%+v, want %+v", ms, want)
	}
	for _, bad := range []string{"x", dir, dir + ":rel", "rel:/x", dir + ":/x:zz", dir + ":/", "/no/such/dir:/x", dir + ":/x:ro:extra"} {
		if _, err := ParseVolumes([]string{bad}); err == nil {
			t.Errorf("-v %q accepted", bad)
		}
	}
}

func TestBuildMap(t *testing.T) {
	ranges := []subRange{{100000, 65536}}
	m, _ := buildMap(1000, ranges, false)
	if want := []IDMap{{0, 1000, 1}, {1, 100000, 65536}}; !reflect.DeepEqual(m, want) {
		t.Errorf("map %v, want %v", m, want)
	}
	m, _ = buildMap(1000, ranges, true)
	want := []IDMap{{0, 100000, 1000}, {1001, 101000, 64536}, {1000, 1000, 1}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("keep-id map %v, want %v", m, want)
	}
	if _, err := buildMap(70000, ranges, true); err == nil {
		t.Errorf("keep-id with too few subordinate ids accepted")
	}
}

func TestSubIDs(t *testing.T) {
	f := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(f, []byte("alice:100000:65536\nbob:200000:10\n1000:300000:5\nbroken\n"), 0o644)
	if got := subIDs(f, "bob", 999); !reflect.DeepEqual(got, []subRange{{200000, 10}}) {
		t.Errorf("bob: %v", got)
	}
	if got := subIDs(f, "carol", 1000); !reflect.DeepEqual(got, []subRange{{300000, 5}}) {
		t.Errorf("by uid: %v", got)
	}
	if got := subIDs(f, "dave", 1); got != nil {
		t.Errorf("dave: %v", got)
	}
}
