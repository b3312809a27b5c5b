package image

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// InitFiles are the files the runtime writes into a container's init
// layer; should they show up in an upper, diff and commit still leave them
// out, so one container's identity never leaks into an image.
var InitFiles = []string{"etc/hosts", "etc/resolv.conf", "etc/hostname"}

// ContainerImage reads the image a container runs from
// <containerDir>/image: the first line that names an image in the store
// (a name, or the ID rmi -f adds when it takes the names away).
func (s *Store) ContainerImage(containerDir string) (*Image, error) {
	p := filepath.Join(containerDir, "image")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", containerDir, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var firstErr error
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			img, err := s.Resolve(l)
			if err == nil {
				return img, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("container %s: %w", containerDir, firstErr)
	}
	return nil, fmt.Errorf("container %s: %s names no image", containerDir, p)
}

// Commit turns the upper dir of the container in containerDir into a new
// layer on top of the container's image, and names the result name.
func (s *Store) Commit(containerDir, name string) (*Image, error) {
	base, err := s.ContainerImage(containerDir)
	if err != nil {
		return nil, err
	}
	upper := filepath.Join(containerDir, "upper")
	if _, err := os.Stat(upper); err != nil {
		return nil, fmt.Errorf("commit: container upper %s: %w", upper, err)
	}
	tarPath, err := s.tarUpper(upper)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", upper, err)
	}
	defer os.Remove(tarPath)
	img, err := s.newImage(base, nil, tarPath, name, "strata commit")
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", containerDir, err)
	}
	return img, nil
}

// Change is one line of `strata diff`.
type Change struct {
	Kind byte   // 'A' added, 'C' changed, 'D' deleted
	Path string // absolute, inside the container
}

func (c Change) String() string { return string(c.Kind) + " " + c.Path }

// Diff lists what the container in containerDir changed relative to its
// image, sorted by path. The upper is walked through fds (walkTree) and
// the lowers are looked up beneath their roots, so neither a running
// container nor a layer can point diff at a host file.
func (s *Store) Diff(containerDir string) ([]Change, error) {
	base, err := s.ContainerImage(containerDir)
	if err != nil {
		return nil, err
	}
	lowers, err := openLowers(base.Layers())
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", containerDir, err)
	}
	defer lowers.close()
	upper := filepath.Join(containerDir, "upper")
	skip := map[string]bool{}
	for _, f := range InitFiles {
		skip[f] = true
	}
	var out []Change
	err = walkTree(upper, func(e *walkEntry) (bool, error) {
		rel := e.rel
		if skip[rel] {
			return false, nil
		}
		dir, name := path.Split(rel)
		if name == ovl.OpaqueMarker {
			return false, nil
		}
		if target, ok := ovl.WhiteoutTarget(name); ok {
			rel = dir + target
			if !skip[rel] {
				out = append(out, Change{'D', "/" + rel})
			}
			return false, nil
		}
		if ovl.IsWhiteoutDevice(&e.st) {
			out = append(out, Change{'D', "/" + rel})
			return false, nil
		}
		kind := byte('A')
		if lowers.has(rel) {
			kind = 'C'
		}
		out = append(out, Change{kind, "/" + rel})
		// A dir private to a subordinate id (openErr) is listed, its
		// contents are not: commit reads them from a user namespace.
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", upper, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// layerFds are the roots of a stack of lowers, top first, held open.
type layerFds []int

func openLowers(dirs []string) (layerFds, error) {
	var fds layerFds
	for _, d := range dirs {
		fd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			fds.close()
			return nil, fmt.Errorf("open layer %s: %w", d, err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func (l layerFds) close() {
	for _, fd := range l {
		unix.Close(fd)
	}
}

// has reports whether rel is visible in the union of the lowers (top
// first), honouring OCI whiteouts and opaque markers. A layer's contents
// are its author's: a symlink on the way (ELOOP) or a non-dir (ENOTDIR)
// is a non-directory that hides whatever lies below it, as in overlayfs,
// and is never followed.
func (l layerFds) has(rel string) bool {
	parts := strings.Split(rel, "/")
	var st unix.Stat_t
	for _, root := range l {
		// A whiteout or opaque marker on any ancestor in this layer hides
		// everything below it in the layers beneath.
		hidden := false
		for i := range parts {
			prefix := path.Join(parts[:i]...)
			if lstatBeneath(root, path.Join(prefix, ovl.WhiteoutName(parts[i])), &st) == nil {
				return false
			}
			if i < len(parts)-1 {
				if lstatBeneath(root, path.Join(prefix, parts[i], ovl.OpaqueMarker), &st) == nil {
					hidden = true
				}
			}
		}
		err := lstatBeneath(root, rel, &st)
		switch {
		case err == nil:
			return true
		case err != unix.ENOENT:
			return false
		case hidden:
			return false
		}
	}
	return false
}

// FindContainer returns the directory of the container whose ID, ID
// prefix or name is ref, under <root>/containers (the runtime's layout:
// <id>/config.json holds "id" and "name").
func (s *Store) FindContainer(ref string) (string, error) {
	if ref == "" {
		// "" is a prefix of every ID and the ID of a config without one.
		return "", fmt.Errorf("container %q: empty container name or ID", ref)
	}
	dir := filepath.Join(s.root, "containers")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("list %s: %w", dir, err)
	}
	var hits []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		cdir := filepath.Join(dir, e.Name())
		var c struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if data, err := os.ReadFile(filepath.Join(cdir, "config.json")); err == nil {
			json.Unmarshal(data, &c)
		}
		if e.Name() == ref || (c.ID != "" && c.ID == ref) || (c.Name != "" && c.Name == ref) {
			return cdir, nil
		}
		if len(ref) >= 3 && strings.HasPrefix(e.Name(), ref) {
			hits = append(hits, cdir)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return "", fmt.Errorf("container %s: no such container in %s", ref, dir)
	}
	return "", fmt.Errorf("container %s: ambiguous ID prefix", ref)
}

// EnvTarUpper marks a re-exec of strata that writes a container's upper as
// a layer tar from inside a user namespace (see TarUpperChild).
const EnvTarUpper = "STRATA_IMAGE_TAR_UPPER"

// tarUpper writes the layer tar of an upper dir into the store's tmp dir.
//
// A rootless container with subordinate ids leaves files owned by those
// ids in its upper, which the user cannot read from the host. So an
// ordinary user with an /etc/subuid range writes the tar from a user
// namespace mapped the way the runtime maps containers (0 = the user,
// 1..N = the range), through util-linux's unshare and newuidmap, where
// it is root over all those ids and sees the container's own owners.
func (s *Store) tarUpper(upper string) (string, error) {
	skip := map[string]bool{}
	for _, f := range InitFiles {
		skip[f] = true
	}
	opts := tarOptions{overlay: true, rootOwned: true, skip: skip}
	uid := os.Geteuid()
	us, uc := subIDStart("/etc/subuid", uid)
	gs, gc := subIDStart("/etc/subgid", uid)
	unshare, lookErr := exec.LookPath("unshare")
	self, selfErr := os.Executable()
	if uid == 0 || us < 0 || gs < 0 || lookErr != nil || selfErr != nil || os.Getenv(EnvTarUpper) != "" {
		return s.tarDir(upper, opts)
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "layer-*.tar")
	if err != nil {
		return "", err
	}
	f.Close()
	cmd := exec.Command(unshare, "--map-root-user",
		"--map-users="+strconv.Itoa(us)+",1,"+strconv.Itoa(uc),
		"--map-groups="+strconv.Itoa(gs)+",1,"+strconv.Itoa(gc),
		"--", self, upper, f.Name())
	cmd.Env = append(os.Environ(), EnvTarUpper+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(f.Name())
		// No namespace (old unshare, no newuidmap): read from the host,
		// which works unless the container made files private to other ids.
		nsErr := fmt.Errorf("tar the upper in a user namespace: %w: %s", err, strings.TrimSpace(string(out)))
		p, err := s.tarDir(upper, opts)
		if err != nil {
			return "", fmt.Errorf("%w; from the host: %w", nsErr, err)
		}
		return p, nil
	}
	return f.Name(), nil
}

// TarUpperChild is the re-exec entry tarUpper starts: args are the upper
// dir and the tar file to write.
func TarUpperChild(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("tar upper: want UPPER OUT, got %q", args)
	}
	skip := map[string]bool{}
	for _, f := range InitFiles {
		skip[f] = true
	}
	f, err := os.OpenFile(args[1], os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("tar upper: %w", err)
	}
	err = writeLayerTar(f, args[0], tarOptions{overlay: true, rootOwned: true, skip: skip})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
