package tests

import (
	"archive/tar"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/strata-run/strata/tests/harness"
)

// countingRegistry is go-containerregistry's registry on a real loopback
// socket, counting blob fetches.
type countingRegistry struct {
	srv      *httptest.Server
	blobGets atomic.Int64
	host     string
}

func newRegistry(t *testing.T, tls bool, wrap func(http.Handler) http.Handler) *countingRegistry {
	t.Helper()
	r := &countingRegistry{}
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			r.blobGets.Add(1)
		}
		inner.ServeHTTP(w, req)
	})
	if wrap != nil {
		h = wrap(h)
	}
	r.srv = httptest.NewUnstartedServer(h)
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	if tls {
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "http://"), "https://")
	return r
}

// push writes img (or an index) to the registry from the test process.
func (r *countingRegistry) push(t *testing.T, ref string, img v1.Image, idx v1.ImageIndex, opts ...remote.Option) string {
	t.Helper()
	full := r.host + "/" + ref
	tag, err := name.NewTag(full, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, remote.WithTransport(r.srv.Client().Transport))
	if idx != nil {
		err = remote.WriteIndex(tag, idx, opts...)
	} else {
		err = remote.Write(tag, img, opts...)
	}
	if err != nil {
		t.Fatalf("push %s: %v", full, err)
	}
	return full
}

func layerDirs(t *testing.T, store string) []string {
	ents, _ := os.ReadDir(filepath.Join(store, "layers"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestImagePullRunRmiPrune(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	reg := newRegistry(t, false, nil)
	img := buildImage(t, testLayers(t), "amd64")
	ref := reg.push(t, "test/multi:v1", img, nil)

	reg.blobGets.Store(0)
	id := strings.TrimSpace(e.ok("pull", "-q", "--tls-verify=false", ref))
	first := reg.blobGets.Load()
	if first < 4 { // config + 3 layers
		t.Errorf("first pull fetched %d blobs, want at least 4", first)
	}
	wantID, _ := img.ConfigName()
	if id != wantID.String() {
		t.Errorf("pull printed %q, want image ID %s", id, wantID)
	}
	reg.blobGets.Store(0)
	e.ok("pull", "-q", "--tls-verify=false", ref)
	if n := reg.blobGets.Load(); n != 0 {
		t.Errorf("second pull fetched %d blobs, want none", n)
	}
	if n := len(layerDirs(t, e.store)); n != 3 {
		t.Errorf("store has %d layer dirs, want 3", n)
	}

	// Without --tls-verify=false a plain-HTTP registry is refused.
	if r := e.run("", "pull", "-q", "127.0.0.1:1/none:v1"); r.code == 0 {
		t.Errorf("pull from a closed port succeeded")
	}

	var insp []struct {
		ID     string `json:"Id"`
		Names  []string
		Layers []string
		Config v1.ConfigFile
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", ref)), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v %v", err, insp)
	}
	if insp[0].ID != wantID.String() || len(insp[0].Layers) != 3 || insp[0].Config.Config.WorkingDir != "/data" ||
		strings.Join(insp[0].Config.Config.Cmd, " ") != "/bin/sh" {
		t.Errorf("inspect: %+v", insp[0])
	}
	if out := e.ok("images"); !strings.Contains(out, reg.host+"/test/multi") || !strings.Contains(out, "v1") {
		t.Errorf("images does not list the pull:\n%s", out)
	}

	out := e.ok("run", "--rm", ref, "sh", "-c", "pwd; cat /data/replace /data/added; test -e /data/gone || echo gone; ls /opq")
	if want := "/data\nnew\nadded\ngone\nnew\n"; out != want {
		t.Errorf("run in the pulled image: got %q, want %q", out, want)
	}

	e.ok("rmi", ref)
	if out := e.ok("images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("images after rmi: %q", out)
	}
	if r := e.run("", "inspect", ref); r.code == 0 || !strings.Contains(r.stderr, "no such image") {
		t.Errorf("inspect after rmi: exit %d, %s", r.code, r.stderr)
	}
	e.ok("prune")
	if l := layerDirs(t, e.store); len(l) != 0 {
		t.Errorf("layers left after prune: %v", l)
	}
	if b, _ := os.ReadDir(filepath.Join(e.store, "blobs", "sha256")); len(b) != 0 {
		t.Errorf("%d blobs left after prune", len(b))
	}
}

// TestImagePullPlatformTLSAuth: a multi-arch index behind TLS (a test CA)
// and basic auth; credentials from $REGISTRY_AUTH_FILE.
func TestImagePullPlatformTLSAuth(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	reg := newRegistry(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if user, pass, ok := r.BasicAuth(); !ok || user != "alice" || pass != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	small := [][]tarEntry{{regular("arch", "amd64\n", 0o644)}}
	other := [][]tarEntry{{regular("arch", "arm64\n", 0o644)}}
	amd := buildImage(t, small, "amd64")
	arm := buildImage(t, other, "arm64")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	ref := reg.push(t, "multi/arch:latest", nil, idx, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))

	// The CA, world-readable, for SSL_CERT_FILE.
	caFile := filepath.Join(e.dir, "ca.pem")
	cert := reg.srv.Certificate()
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
	authFile := filepath.Join(e.dir, "auth.json")
	os.WriteFile(authFile, []byte(`{"auths":{"`+reg.host+`":{"auth":"YWxpY2U6czNjcmV0"}}}`), 0o644)
	pull := func(env []string, args ...string) result {
		cmd := e.command(append([]string{"pull", "-q"}, args...)...)
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return result{stdout: string(out), code: code}
	}
	if r := pull([]string{"REGISTRY_AUTH_FILE=" + authFile}, ref); r.code == 0 || !strings.Contains(r.stdout, "certificate") {
		t.Errorf("pull from a TLS registry with an unknown CA: exit %d, %s", r.code, r.stdout)
	}
	if r := pull([]string{"SSL_CERT_FILE=" + caFile}, ref); r.code == 0 || !strings.Contains(strings.ToLower(r.stdout), "unauthorized") {
		t.Errorf("pull without credentials: exit %d, %s", r.code, r.stdout)
	}
	if r := pull([]string{"SSL_CERT_FILE=" + caFile, "REGISTRY_AUTH_FILE=" + authFile}, ref); r.code != 0 {
		t.Fatalf("pull with CA and credentials: exit %d, %s", r.code, r.stdout)
	}
	amdID, _ := amd.ConfigName()
	armID, _ := arm.ConfigName()
	if out := e.ok("images", "-q"); !strings.Contains(amdID.String(), strings.TrimSpace(out)) {
		t.Errorf("default platform pulled %q, want the amd64 image %s", out, amdID)
	}
	if r := pull([]string{"REGISTRY_AUTH_FILE=" + authFile}, "--tls-verify=false", "--platform", "linux/arm64", ref); r.code != 0 {
		t.Fatalf("pull --platform linux/arm64 --tls-verify=false: exit %d, %s", r.code, r.stdout)
	}
	if strings.TrimSpace(e.ok("inspect", armID.String())) == "" {
		t.Errorf("arm64 image not in the store")
	}
}

// TestImageLoadLayoutAndDockerArchive loads a three-layer image whose
// upper layers delete (whiteouts), replace and hide (opaque dir) files of
// lower ones, from an OCI layout (go-containerregistry), a tar of it and a
// docker-archive (skopeo), and compares the mounted tree with the expected
// one exactly: as the test user, and as root.
func TestImageLoadLayoutAndDockerArchive(t *testing.T) {
	u := harness.User(t)
	if _, err := exec.LookPath("skopeo"); err != nil {
		harness.Skip(t, "skopeo (apt-get install skopeo)")
	}
	for _, asRoot := range []bool{false, true} {
		t.Run(map[bool]string{false: "user", true: "root"}[asRoot], func(t *testing.T) {
			loadAndCompare(t, newRunEnv(t, u, asRoot))
		})
	}
}

func loadAndCompare(t *testing.T, e *runEnv) {
	u := e.user
	layers := testLayers(t)
	img := buildImage(t, layers, "amd64")

	layoutDir := filepath.Join(e.dir, "layout")
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(e.dir, "multi.tar")
	mustRun(t, "skopeo", "--insecure-policy", "copy", "-q", "oci:"+layoutDir+":v1", "docker-archive:"+archive+":example.test/multi:v1")
	ociTar := filepath.Join(e.dir, "oci.tar")
	mustRun(t, "tar", "-C", layoutDir, "-cf", ociTar, ".")
	mustRun(t, "chown", "-R", strconv.Itoa(u.UID), layoutDir, archive, ociTar)

	for _, c := range []struct{ src, name string }{
		{layoutDir, "localhost/layout:v1"},
		{archive, "example.test/multi:v1"},
		{ociTar, "localhost/oci:v1"},
	} {
		if out := e.ok("load", "-q", "-i", c.src); !strings.Contains(out, c.name) {
			t.Errorf("load -i %s: %q, want the name %s", c.src, out, c.name)
		}
	}
	// The same layers in all three: each unpacked once.
	if n := len(layerDirs(t, e.store)); n != 3 {
		t.Errorf("store has %d layer dirs, want 3 (shared)", n)
	}
	command := u.Command
	if e.asRoot {
		command = exec.Command
	}
	want := expectedTree(layers, !e.asRoot)
	for _, name := range []string{"localhost/layout:v1", "example.test/multi:v1"} {
		mnt := filepath.Join(e.dir, "mnt")
		os.Mkdir(mnt, 0o755)
		os.Chown(mnt, u.UID, u.GID)
		e.ok("mount-image", name, mnt)
		got := treeListing(t, command, mnt)
		e.ok("umount", mnt)
		if d := diffLines(want, got); d != "" {
			t.Errorf("mount-image %s differs from the expected tree:\n%s", name, d)
		}
	}
	// Something that is no image is refused, naming the file.
	bad := filepath.Join(e.dir, "bad.tar")
	mustRun(t, "tar", "-C", e.dir, "-cf", bad, "multi.tar")
	os.Chown(bad, u.UID, u.GID)
	if r := e.run("", "load", "-i", bad); r.code == 0 || !strings.Contains(r.stderr, bad) {
		t.Errorf("load of a tar that is no image: exit %d, %s", r.code, r.stderr)
	}
}

// TestImageOwnershipInContainer: root-owned, set-id and device entries,
// unpacked by an ordinary user, show their owner and mode in a container.
func TestImageOwnershipInContainer(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	img := buildImage(t, testLayers(t), "amd64")
	layoutDir := filepath.Join(e.dir, "own")
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"}))
	mustRun(t, "chown", "-R", strconv.Itoa(u.UID), layoutDir)
	e.ok("load", "-q", "-i", layoutDir)
	out := e.ok("run", "--rm", "localhost/own:v1", "stat", "-c", "%n %u:%g %a %F",
		"/usr/bin/suid", "/usr/bin/sgid", "/home/user/private", "/opt/sticky", "/tmp")
	want := strings.Join([]string{
		"/usr/bin/suid 0:0 4755 regular file",
		"/usr/bin/sgid 0:42 2711 regular file",
		"/home/user/private 1000:1000 600 regular file",
		"/opt/sticky 0:0 1777 directory",
		"/tmp 0:0 1777 directory",
	}, "\n") + "\n"
	if out != want {
		t.Errorf("owners and modes inside the container:\n got:\n%s want:\n%s", out, want)
	}
	// Root in the container can read the private file of user 1000.
	if out := e.ok("run", "--rm", "localhost/own:v1", "cat", "/home/user/private"); out != "secret\n" {
		t.Errorf("cat /home/user/private: %q", out)
	}
	// The store itself holds no set-id file and nothing the user cannot remove.
	if out, err := exec.Command("find", filepath.Join(e.store, "layers"), "-perm", "/6000").Output(); err != nil || len(out) != 0 {
		t.Errorf("set-id files on disk in the store: %s %v", out, err)
	}
}

// TestImageDeviceNodes: device entries of a layer, unpacked by an ordinary
// user as empty files carrying "0:0:0666:char-1-3" in
// user.containers.override_stat, show as devices in a container.
func TestImageDeviceNodes(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	img := buildImage(t, testLayers(t), "amd64")
	layoutDir := filepath.Join(e.dir, "dev")
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"}))
	mustRun(t, "chown", "-R", strconv.Itoa(u.UID), layoutDir)
	e.ok("load", "-q", "-i", layoutDir)
	out := e.ok("run", "--rm", "localhost/dev:v1", "stat", "-c", "%n %u:%g %a %F %t:%T", "/opt/null", "/opt/disk")
	if want := "/opt/null 0:0 666 character special file 1:3\n/opt/disk 0:6 660 block special file 8:1\n"; out != want {
		t.Errorf("devices inside the container:\n got: %q\nwant: %q", out, want)
	}
}

// TestImageCommitRoundTrip: a container changes, deletes and adds files;
// diff lists them, commit makes an image of them, a container of the new
// image sees them, and the old container's /etc/hostname stays behind.
func TestImageCommitRoundTrip(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	e.ok("image", "build-default")
	e.ok("run", "--name", "c1", "--hostname", "oldhost", "strata/busybox", "sh", "-c",
		"echo added > /added && rm /etc/group && echo changed >> /etc/passwd && mkdir -p /newdir/sub && "+
			"echo x > /newdir/sub/f && rm -rf /var/tmp && mkdir -m 755 /home/user/d && chown 1000:1000 /home/user/d && "+
			"echo s > /home/user/d/secret && chown 1000:1000 /home/user/d/secret && chmod 600 /home/user/d/secret && "+
			"chmod 4755 /added && cat /etc/hostname")

	got := strings.Split(strings.TrimSpace(e.ok("diff", "c1")), "\n")
	want := []string{"A /added", "C /etc", "D /etc/group", "C /etc/passwd", "C /home", "C /home/user",
		"A /home/user/d", "A /home/user/d/secret", "A /newdir", "A /newdir/sub", "A /newdir/sub/f", "C /var", "D /var/tmp"}
	if d := diffLines(want, got); d != "" {
		t.Errorf("strata diff c1:\n%s", d)
	}

	// The image c1 runs cannot go while c1 exists.
	if r := e.run("", "rmi", "strata/busybox"); r.code == 0 || !strings.Contains(r.stderr, "used by container") {
		t.Errorf("rmi of an image a container uses: exit %d, %s", r.code, r.stderr)
	}

	e.ok("commit", "c1", "committed:v1")
	out := e.ok("run", "--rm", "--hostname", "newhost", "committed:v1", "sh", "-c",
		"cat /added; test -e /etc/group || echo nogroup; tail -1 /etc/passwd; cat /newdir/sub/f; "+
			"test -e /var/tmp || echo novartmp; cat /etc/hostname; stat -c '%u:%g %a' /home/user/d /added /home/user/d/secret; "+
			"cat /home/user/d/secret")
	if want := "added\nnogroup\nchanged\nx\nnovartmp\nnewhost\n1000:1000 755\n0:0 4755\n1000:1000 600\ns\n"; out != want {
		t.Errorf("container of the committed image:\n got: %q\nwant: %q", out, want)
	}

	// The committed image itself holds no /etc/hostname, hosts or resolv.conf.
	mnt := filepath.Join(e.dir, "mnt")
	os.Mkdir(mnt, 0o755)
	os.Chown(mnt, u.UID, u.GID)
	e.ok("mount-image", "committed:v1", mnt)
	ls, err := u.Command("sh", "-c", "ls -a "+mnt+"/etc; cat "+mnt+"/added").CombinedOutput()
	e.ok("umount", mnt)
	if err != nil || strings.Contains(string(ls), "hostname") || strings.Contains(string(ls), "hosts") ||
		strings.Contains(string(ls), "resolv.conf") || !strings.Contains(string(ls), "passwd") {
		t.Errorf("committed image's /etc: %s %v", ls, err)
	}

	// --writable mounts take writes in a scratch layer that goes at unmount.
	e.ok("mount-image", "--writable", "committed:v1", mnt)
	wout, werr := u.Command("sh", "-c", "echo scratch > "+mnt+"/scratch && cat "+mnt+"/scratch").CombinedOutput()
	e.ok("umount", mnt)
	if werr != nil || string(wout) != "scratch\n" {
		t.Errorf("write to a --writable mount: %q %v", wout, werr)
	}
	e.ok("mount-image", "committed:v1", mnt)
	_, serr := u.Command("test", "-e", mnt+"/scratch").CombinedOutput()
	e.ok("umount", mnt)
	if serr == nil {
		t.Errorf("scratch file outlived its --writable mount")
	}
	// More names, and rmi of one name only untags.
	e.ok("tag", "committed:v1", "other/name:v2")
	if out := e.ok("images"); !strings.Contains(out, "localhost/other/name") || !strings.Contains(out, "localhost/committed") {
		t.Errorf("images after tag:\n%s", out)
	}
	if out := e.ok("rmi", "other/name:v2"); !strings.Contains(out, "Untagged: localhost/other/name:v2") || strings.Contains(out, "Deleted") {
		t.Errorf("rmi of one of two names: %q", out)
	}
	e.ok("inspect", "committed:v1")

	// rmi -f of the image c1 uses takes its names only; after prune c1
	// can still be committed, as its layers stayed.
	if out := e.ok("rmi", "-f", "strata/busybox"); !strings.Contains(out, "Untagged") || strings.Contains(out, "Deleted") {
		t.Errorf("rmi -f of an image in use: %q", out)
	}
	e.ok("rmi", "committed:v1")
	e.ok("prune")
	e.ok("commit", "c1", "again")
	if out := e.ok("run", "--rm", "again", "cat", "/added"); out != "added\n" {
		t.Errorf("image committed after rmi -f and prune: %q", out)
	}
	e.ok("rm", "c1")
}

// TestImageImport makes images from a directory the user owns (its files
// become root's) and from a gzipped tar, and runs them.
func TestImageImport(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	mustRun(t, "chmod", "1777", filepath.Join(e.rootfs, "tmp")) // os.Chmod drops the sticky bit
	e.ok("import", e.rootfs, "fromdir")
	if out := e.ok("run", "--rm", "fromdir", "stat", "-c", "%u:%g %a", "/bin/busybox", "/tmp"); out != "0:0 755\n0:0 1777\n" {
		t.Errorf("imported dir: owners and modes %q", out)
	}
	tgz := filepath.Join(e.dir, "rootfs.tar.gz")
	mustRun(t, "tar", "-C", e.rootfs, "--numeric-owner", "--owner=0", "--group=0", "-czf", tgz, ".")
	os.Chown(tgz, u.UID, u.GID)
	e.ok("import", tgz, "fromtar:v1")
	if out := e.ok("run", "--rm", "fromtar:v1", "cat", "/etc/motd"); out != "lower layer\n" {
		t.Errorf("imported tar: %q", out)
	}
	if r := e.run("", "import", filepath.Join(e.dir, "missing"), "x"); r.code == 0 || !strings.Contains(r.stderr, "missing") {
		t.Errorf("import of a missing path: exit %d, %s", r.code, r.stderr)
	}
}

// TestImagePullInterruptedAndConcurrent kills a pull in the middle of a
// layer: no layer that looks complete may remain, and the next pull and
// prune clean up. Then two pulls of one image run at once.
func TestImagePullInterruptedAndConcurrent(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	var stall atomic.Bool
	started := make(chan struct{}, 16)
	release := make(chan struct{})
	defer close(release)
	reg := newRegistry(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if stall.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 1000 { // a layer, not the config
					for k, v := range rec.Header() {
						w.Header()[k] = v
					}
					w.WriteHeader(rec.Code)
					w.Write(body[:len(body)/2])
					w.(http.Flusher).Flush()
					started <- struct{}{}
					<-release
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	img := buildImage(t, testLayers(t), "amd64")
	ref := reg.push(t, "test/stall:v1", img, nil)
	cf, _ := img.ConfigFile()
	stalled := cf.RootFS.DiffIDs[0].Hex // the busybox layer, the only big one

	stall.Store(true)
	cmd := e.command("pull", "-q", "--tls-verify=false", ref)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("pull never reached a layer")
	}
	// setpriv execs strata, so this PID is strata itself.
	cmd.Process.Kill()
	cmd.Wait()
	// Small layers fetched alongside may be complete; the one cut off
	// must not exist.
	for _, l := range layerDirs(t, e.store) {
		if l == stalled {
			t.Errorf("interrupted pull left the layer it was cut off in: %s", l)
		}
	}
	if out := e.ok("images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("interrupted pull left an image: %q", out)
	}
	e.ok("prune")
	if ents, _ := os.ReadDir(filepath.Join(e.store, "tmp")); len(ents) != 0 {
		t.Errorf("prune left debris in tmp: %d entries", len(ents))
	}

	stall.Store(false)
	results := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() { results <- e.run("", "pull", "-q", "--tls-verify=false", ref) }()
	}
	for i := 0; i < 2; i++ {
		if r := <-results; r.code != 0 {
			t.Errorf("concurrent pull: exit %d: %s", r.code, r.stderr)
		}
	}
	if n := len(layerDirs(t, e.store)); n != 3 {
		t.Errorf("after concurrent pulls: %d layer dirs, want 3", n)
	}
	if out := e.ok("run", "--rm", ref, "cat", "/data/added"); out != "added\n" {
		t.Errorf("run after concurrent pulls: %q", out)
	}
}

// TestImageHostilePull: layers that try to write outside their directory
// are refused end to end, naming the entry, and leave nothing behind.
func TestImageHostilePull(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	reg := newRegistry(t, false, nil)
	victimDir := filepath.Join(e.dir, "victim")
	os.Mkdir(victimDir, 0o777)
	cases := []struct {
		name  string
		entry string
		layer []tarEntry
	}{
		{"dotdot", "../../../../../../../../.." + victimDir + "/dotdot",
			[]tarEntry{regular("../../../../../../../../.."+victimDir+"/dotdot", "x", 0o644)}},
		{"symlink", "out/symlink",
			[]tarEntry{{name: "out", typ: tar.TypeSymlink, link: victimDir}, regular("out/symlink", "x", 0o644)}},
		{"hardlink", "hl",
			[]tarEntry{{name: "hl", typ: tar.TypeLink, link: "../../../../../../../etc/passwd"}}},
	}
	for _, c := range cases {
		ref := reg.push(t, "hostile/"+c.name+":v1", buildImage(t, [][]tarEntry{c.layer}, "amd64"), nil)
		r := e.run("", "pull", "-q", "--tls-verify=false", ref)
		if r.code == 0 || !strings.Contains(r.stderr, c.entry) {
			t.Errorf("%s: pull exit %d, stderr %q; want a refusal naming %q", c.name, r.code, r.stderr, c.entry)
		}
	}
	if ents, _ := os.ReadDir(victimDir); len(ents) != 0 {
		t.Errorf("hostile layers wrote outside the store: %v", ents)
	}
	if l := layerDirs(t, e.store); len(l) != 0 {
		t.Errorf("hostile pulls left layers: %v", l)
	}
	if out := e.ok("images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("hostile pulls left images: %q", out)
	}
}
