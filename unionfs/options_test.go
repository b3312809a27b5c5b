package unionfs

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOverlayOptions(t *testing.T) {
	noPassthrough := DefaultSpeed
	noPassthrough.Passthrough = false
	tuned := DefaultSpeed
	tuned.KeepCache, tuned.CacheReaddir, tuned.Splice, tuned.Writeback = false, false, false, true
	tuned.LowerTimeout, tuned.UpperTimeout = 0, 1500*time.Millisecond

	for _, c := range []struct {
		name  string
		specs []string // each one -o
		want  Options
	}{
		{
			name:  "fuse-overlayfs argv",
			specs: []string{"lowerdir=/l1:/l2,upperdir=/u,workdir=/w"},
			want:  Options{Lowers: []string{"/l1", "/l2"}, Upper: "/u", Work: "/w", Speed: DefaultSpeed},
		},
		{
			name:  "escaped colon and data-only separator",
			specs: []string{`lowerdir=/a\:b:/c::/data`},
			want:  Options{Lowers: []string{"/a:b", "/c", "/data"}, Speed: DefaultSpeed},
		},
		{
			name:  "repeated -o add lowers in order",
			specs: []string{"lowerdir=/l1", "lowerdir=/l2,upperdir=/u", "workdir=/w"},
			want:  Options{Lowers: []string{"/l1", "/l2"}, Upper: "/u", Work: "/w", Speed: DefaultSpeed},
		},
		{
			name:  "ro drops upper and work given before it",
			specs: []string{"lowerdir=/l,upperdir=/u,workdir=/w,ro"},
			want:  Options{Lowers: []string{"/l"}, Speed: DefaultSpeed},
		},
		{
			name:  "flags",
			specs: []string{"lowerdir=/l,userxattr,redirect_dir=on,xattr_permissions=2,allow_other,fsname=x,debug,nopassthrough"},
			want: Options{Lowers: []string{"/l"}, UserXattr: true, RedirectDir: true, Ownership: OwnershipXattr,
				AllowOther: true, FsName: "x", Debug: true, Speed: noPassthrough},
		},
		{
			name:  "redirect_dir off and xattr_permissions=0",
			specs: []string{"lowerdir=/l,redirect_dir=off,xattr_permissions=0"},
			want:  Options{Lowers: []string{"/l"}, Speed: DefaultSpeed},
		},
		{
			name:  "speed switches and timeouts as durations or seconds",
			specs: []string{"lowerdir=/l,nokeepcache,nocachereaddir,nosplice,writeback,lowertimeout=0,uppertimeout=1.5"},
			want:  Options{Lowers: []string{"/l"}, Speed: tuned},
		},
		{
			name:  "accepted and ignored, blanks skipped",
			specs: []string{" lowerdir=/l , ,noatime,index=on,xino=auto,squash_to_root,context=x"},
			want:  Options{Lowers: []string{"/l"}, Speed: DefaultSpeed},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Options{Speed: DefaultSpeed}
			for _, s := range c.specs {
				if err := ParseOverlayOptions(&got, s); err != nil {
					t.Fatalf("ParseOverlayOptions(%q): %v", s, err)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseOverlayOptionsErrors(t *testing.T) {
	for _, c := range []struct{ spec, names string }{
		{"lowerdir=/l,frobnicate=1", "frobnicate"},
		{"lowertimeout=soon", "lowertimeout=soon"},
		{"uppertimeout=", "uppertimeout"},
	} {
		o := Options{Speed: DefaultSpeed}
		err := ParseOverlayOptions(&o, c.spec)
		if err == nil || !strings.Contains(err.Error(), c.names) {
			t.Errorf("ParseOverlayOptions(%q) = %v, want an error naming %q", c.spec, err, c.names)
		}
	}
}
