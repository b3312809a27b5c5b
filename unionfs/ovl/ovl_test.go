package ovl

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOverrideRoundTrip(t *testing.T) {
	cases := []struct {
		o    Override
		text string
	}{
		{Override{Mode: unix.S_IFDIR | 0o755}, "0:0:0755:dir"},
		{Override{Mode: unix.S_IFREG | 0o4755}, "0:0:4755:file"},
		{Override{UID: 1000, GID: 100, Mode: unix.S_IFDIR | 0o1777}, "1000:100:1777:dir"},
		{Override{GID: 5, Mode: unix.S_IFCHR | 0o620, Rdev: unix.Mkdev(136, 3)}, "0:5:0620:char-136-3"},
		{Override{GID: 6, Mode: unix.S_IFBLK | 0o660, Rdev: unix.Mkdev(8, 1)}, "0:6:0660:block-8-1"},
		{Override{Mode: unix.S_IFIFO | 0o600}, "0:0:0600:pipe"},
		{Override{Mode: unix.S_IFSOCK | 0o777}, "0:0:0777:socket"},
		{Override{Mode: unix.S_IFLNK | 0o777}, "0:0:0777:symlink"},
		{Override{UID: 4294967294, Mode: unix.S_IFREG}, "4294967294:0:0000:file"},
	}
	for _, c := range cases {
		if got := c.o.Format(); got != c.text {
			t.Errorf("Format(%+v) = %q, want %q", c.o, got, c.text)
		}
		back, err := ParseOverride(c.text)
		if err != nil || back != c.o {
			t.Errorf("ParseOverride(%q) = %+v, %v; want %+v", c.text, back, err, c.o)
		}
	}
}

func TestParseOverrideForms(t *testing.T) {
	good := []struct {
		text string
		want Override
	}{
		{"0:0:755", Override{Mode: 0o755}},                                    // three fields: type from disk
		{"1:2:0100644", Override{UID: 1, GID: 2, Mode: unix.S_IFREG | 0o644}}, // type bits in MODE
		{"0:0:0644:file\x00", Override{Mode: unix.S_IFREG | 0o644}},           // NUL-terminated
		{"0:0:040755:dir", Override{Mode: unix.S_IFDIR | 0o755}},              // TYPE wins over MODE bits
	}
	for _, g := range good {
		got, err := ParseOverride(g.text)
		if err != nil || got != g.want {
			t.Errorf("ParseOverride(%q) = %+v, %v; want %+v", g.text, got, err, g.want)
		}
	}
	for _, bad := range []string{"", "0:0", "a:0:755", "0:0:9", "0:0:0755:weird", "0:0:0755:char-x-1", "0:0:0755:char-1", "1:2:3:4:5", "-1:0:755"} {
		if _, err := ParseOverride(bad); err == nil {
			t.Errorf("ParseOverride(%q) accepted", bad)
		}
	}
}

func TestOverrideApply(t *testing.T) {
	cases := []struct {
		name    string
		disk    uint32
		o       Override
		want    uint32
		wantDev uint64
	}{
		{"owner and mode", unix.S_IFREG | 0o600, Override{UID: 5, GID: 6, Mode: unix.S_IFREG | 0o4755}, unix.S_IFREG | 0o4755, 0},
		{"empty file stands for a device", unix.S_IFREG | 0o600, Override{Mode: unix.S_IFCHR | 0o666, Rdev: unix.Mkdev(1, 3)}, unix.S_IFCHR | 0o666, unix.Mkdev(1, 3)},
		{"three-field form keeps the disk type", unix.S_IFDIR | 0o700, Override{Mode: 0o755}, unix.S_IFDIR | 0o755, 0},
		{"a dir never becomes a file", unix.S_IFDIR | 0o700, Override{Mode: unix.S_IFREG | 0o644}, unix.S_IFDIR | 0o644, 0},
		{"mode 0000 stays", unix.S_IFREG | 0o600, Override{Mode: unix.S_IFREG}, unix.S_IFREG, 0},
	}
	for _, c := range cases {
		st := unix.Stat_t{Mode: c.disk, Uid: 99, Gid: 99}
		c.o.Apply(&st)
		if st.Mode != c.want || st.Rdev != c.wantDev || st.Uid != c.o.UID || st.Gid != c.o.GID {
			t.Errorf("%s: got mode %o rdev %d uid %d gid %d; want mode %o rdev %d", c.name, st.Mode, st.Rdev, st.Uid, st.Gid, c.want, c.wantDev)
		}
	}
}

func TestWhiteoutsAndOpaque(t *testing.T) {
	names := []struct {
		name, target string
		ok           bool
	}{
		{".wh.foo", "foo", true},
		{".wh..hidden", ".hidden", true},
		{".wh..wh..opq", "", false}, // the opaque marker deletes nothing
		{"foo", "", false},
		{".whfoo", "", false},
	}
	for _, n := range names {
		target, ok := WhiteoutTarget(n.name)
		if target != n.target || ok != n.ok {
			t.Errorf("WhiteoutTarget(%q) = %q, %v", n.name, target, ok)
		}
		if ok && WhiteoutName(target) != n.name {
			t.Errorf("WhiteoutName(%q) = %q, want %q", target, WhiteoutName(target), n.name)
		}
	}
	devs := []struct {
		st   unix.Stat_t
		want bool
	}{
		{unix.Stat_t{Mode: unix.S_IFCHR}, true},
		{unix.Stat_t{Mode: unix.S_IFCHR, Rdev: unix.Mkdev(1, 3)}, false},
		{unix.Stat_t{Mode: unix.S_IFBLK}, false},
		{unix.Stat_t{Mode: unix.S_IFREG}, false}, // xattr whiteouts are files to strata
	}
	for _, d := range devs {
		if IsWhiteoutDevice(&d.st) != d.want {
			t.Errorf("IsWhiteoutDevice(mode %o rdev %d) != %v", d.st.Mode, d.st.Rdev, d.want)
		}
	}
	for v, want := range map[string]bool{"y": true, "y\x00": true, "n": false, "x": false, "": false} {
		if IsOpaqueValue([]byte(v)) != want {
			t.Errorf("IsOpaqueValue(%q) != %v", v, want)
		}
	}
	if XattrPrefix(false)+Opaque != "trusted.overlay.opaque" || XattrPrefix(true)+Opaque != "user.overlay.opaque" {
		t.Error("overlay xattr names")
	}
	for name, want := range map[string]bool{"trusted.overlay.origin": true, "user.overlay.opaque": true, "user.containers.override_stat": false, "security.capability": false} {
		if IsOverlayXattr(name) != want {
			t.Errorf("IsOverlayXattr(%q) != %v", name, want)
		}
	}
}

func TestOrigin(t *testing.T) {
	fid := []byte{0x39, 0x30, 0, 0, 7, 0, 0, 0} // ino 12345, generation 7
	fb := EncodeOrigin(1, fid)
	if len(fb) != 21+len(fid) || fb[1] != 0xfb || fb[2] != byte(len(fb)) || fb[4] != 1 {
		t.Fatalf("EncodeOrigin = % x", fb)
	}
	if ino, ok := OriginIno(fb); !ok || ino != 12345 {
		t.Errorf("OriginIno = %d, %v", ino, ok)
	}
	name := IndexName(fb)
	back, ok := ParseIndexName(name)
	if !ok || !bytes.Equal(back, fb) {
		t.Errorf("ParseIndexName(IndexName(fb)) = % x, %v", back, ok)
	}
	if _, ok := OriginIno(EncodeOrigin(0x81, fid)); ok {
		t.Error("OriginIno read a handle type that carries no inode number")
	}
	if _, ok := OriginIno(fb[:10]); ok {
		t.Error("OriginIno read a short handle")
	}
	if _, ok := ParseIndexName("strata-12-34"); ok {
		t.Error("ParseIndexName read strata's private index name")
	}
}
