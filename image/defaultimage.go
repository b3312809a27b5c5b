package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultImageName is what `strata image build-default` names its image.
const DefaultImageName = "strata/busybox:latest"

// DefaultBusybox is where Debian's busybox-static package puts its binary.
const DefaultBusybox = "/bin/busybox"

// BuildDefault builds the project's default image from a static busybox
// (Debian's busybox-static): /bin/busybox with a symlink per applet,
// /etc/passwd and /etc/group with root and user (1000), an
// /etc/nsswitch.conf, /tmp 1777,
// /root, /home/user. Owners are set in the tar itself, so the result is the
// same whoever builds it.
func (s *Store) BuildDefault(busybox, name string) (*Image, error) {
	if busybox == "" {
		busybox = DefaultBusybox
	}
	if name == "" {
		name = DefaultImageName
	}
	fi, err := os.Stat(busybox)
	if err != nil {
		return nil, fmt.Errorf("default image: %s (install Debian's busybox-static): %w", busybox, err)
	}
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("default image: %s --list-full: %w", busybox, err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("default image: %w", err)
	}
	mtime := fi.ModTime().UTC().Truncate(time.Second)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if body != nil {
			h.Size = int64(len(body))
		}
		if err == nil {
			err = tw.WriteHeader(h)
		}
		if err == nil && body != nil {
			_, err = tw.Write(body)
		}
	}
	dirs := []struct {
		name     string
		mode     int64
		uid, gid int
	}{
		{"bin", 0o755, 0, 0}, {"dev", 0o755, 0, 0}, {"etc", 0o755, 0, 0},
		{"home", 0o755, 0, 0}, {"home/user", 0o755, 1000, 1000},
		{"proc", 0o555, 0, 0}, {"root", 0o700, 0, 0}, {"run", 0o755, 0, 0},
		{"sbin", 0o755, 0, 0}, {"sys", 0o555, 0, 0}, {"tmp", 0o1777, 0, 0},
		{"usr", 0o755, 0, 0}, {"usr/bin", 0o755, 0, 0}, {"usr/sbin", 0o755, 0, 0},
		{"var", 0o755, 0, 0}, {"var/tmp", 0o1777, 0, 0},
	}
	for _, d := range dirs {
		add(&tar.Header{Name: d.name + "/", Typeflag: tar.TypeDir, Mode: d.mode, Uid: d.uid, Gid: d.gid}, nil)
	}
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bin)
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(
		"root:x:0:0:root:/root:/bin/sh\n"+
			"user:x:1000:1000:user:/home/user:/bin/sh\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	add(&tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(
		"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"))
	// busybox-static is linked with glibc, whose resolver crashes looking
	// up a host name (wget, ping) where no nsswitch.conf says "files dns".
	add(&tar.Header{Name: "etc/nsswitch.conf", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(
		"passwd: files\ngroup: files\nhosts: files dns\n"))
	for _, a := range applets {
		rel := strings.TrimPrefix(filepath.Clean(a), "/")
		if rel == "bin/busybox" || strings.HasPrefix(rel, "..") {
			continue
		}
		add(&tar.Header{Name: rel, Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox", Mode: 0o777}, nil)
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("default image: %w", err)
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "default-*.tar")
	if err != nil {
		return nil, fmt.Errorf("default image: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, &buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("default image: %w", err)
	}
	cfg := &v1.ConfigFile{Config: v1.Config{
		Env:    []string{DefaultEnv},
		Cmd:    []string{"/bin/sh"},
		Labels: map[string]string{"org.opencontainers.image.description": "busybox from Debian's busybox-static, built by strata"},
	}}
	img, err := s.newImage(nil, cfg, f.Name(), name, "strata image build-default")
	if err != nil {
		return nil, fmt.Errorf("default image: %w", err)
	}
	return img, nil
}
