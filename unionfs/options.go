package unionfs

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/strata-run/strata/unionfs/mounts"
)

// Ownership says where file owners and modes live.
type Ownership int

const (
	// OwnershipAuto picks Real when the server runs as root of its user
	// namespace with more than one id mapped, else Xattr.
	OwnershipAuto Ownership = iota
	// OwnershipReal stores owners and modes on disk with chown/chmod.
	OwnershipReal
	// OwnershipXattr stores them in user.containers.override_stat, as
	// containers/storage and fuse-overlayfs do for unprivileged users.
	OwnershipXattr
)

// Speed holds the caching levers. Each can be switched off on its own so
// `strata bench` can show what it buys; the zero value is not the default,
// DefaultSpeed is.
type Speed struct {
	// LowerTimeout is how long the kernel may cache entries and attributes
	// that come from immutable lowers (and negative lookups).
	LowerTimeout time.Duration
	// UpperTimeout is the same for entries strata itself may change; strata
	// notifies the kernel when it does.
	UpperTimeout   time.Duration
	KeepCache      bool // keep page cache across opens of lower files
	CacheReaddir   bool // let the kernel cache directory listings
	Passthrough    bool // FUSE passthrough of open files (kernel 6.9+, real root only)
	Writeback      bool // kernel writeback cache
	Splice         bool // splice reads
	ParallelDirops bool
	// ZeroOpendir answers OPENDIR with ENOSYS, so the kernel lists
	// directories with no OPENDIR or RELEASEDIR at all (needs CacheReaddir).
	ZeroOpendir bool
	// Opens says whether files are opened with handles or with no
	// message at all (zero-message opens: OPEN and FLUSH answered ENOSYS,
	// I/O without a handle), which leaves nothing to pass through.
	Opens OpenMode
	// Acl lets the kernel check and cache POSIX ACLs (FUSE_POSIX_ACL)
	// instead of asking for system.posix_acl_access at every access.
	Acl bool
	// KillprivV2 (FUSE_HANDLE_KILLPRIV_V2) has strata clear set-id bits
	// on write, truncate and chown itself, so the kernel no longer asks
	// for security.capability before every write.
	KillprivV2 bool
	// ReaddirplusAuto lets the kernel choose READDIR when it does not
	// need attributes (FUSE_READDIRPLUS_AUTO).
	ReaddirplusAuto bool
}

// OpenMode says how files are opened (Speed.Opens).
type OpenMode int

const (
	// OpensAuto opens with handles where passthrough can work (real
	// root, Passthrough on), where large files gain most from it, and
	// with no message elsewhere, where handles only cost round trips.
	OpensAuto OpenMode = iota
	// OpensHandles: OPEN/RELEASE/FLUSH for every open (passthrough can
	// apply).
	OpensHandles
	// OpensZero: zero-message opens (see iofd.go).
	OpensZero
)

// DefaultSpeed is what `strata mount` uses unless told otherwise.
var DefaultSpeed = Speed{
	LowerTimeout:    time.Hour,
	UpperTimeout:    time.Second,
	KeepCache:       true,
	CacheReaddir:    true,
	Passthrough:     true,
	Writeback:       false,
	Splice:          true,
	ParallelDirops:  true,
	ZeroOpendir:     true,
	Acl:             true,
	KillprivV2:      true,
	ReaddirplusAuto: true,
}

// Options describe one union mount. Lowers are ordered as overlayfs orders
// them: Lowers[0] is the top layer.
type Options struct {
	Lowers []string
	Upper  string // empty: read-only union of the lowers
	Work   string // required with Upper; same filesystem as Upper

	Ownership Ownership
	// UserXattr stores overlay markers (opaque, redirect) under
	// "user.overlay." instead of "trusted.overlay.", as overlayfs's
	// userxattr option does. Auto-set when trusted xattrs are refused.
	UserXattr bool
	// RedirectDir lets rename move merged lower directories (overlayfs
	// redirect_dir=on); without it such renames fail with EXDEV.
	RedirectDir bool

	Speed      Speed
	FsName     string // shown in /proc/mounts; default "strata"
	AllowOther bool
	// DirectMount mounts with mount(2) instead of fusermount3: for root,
	// including root of a user namespace.
	DirectMount bool
	Debug       bool
	Logger      *slog.Logger // nil: discard
	// MountFlags are the suid/nosuid, dev/nodev and exec/noexec options as
	// given, last one winning. They take effect for real root only (what
	// containers-storage asks for rootful podman); any other mount stays
	// nosuid,nodev, the safe default.
	MountFlags []string
}

// ReadOnly reports whether the union has no upper layer.
func (o *Options) ReadOnly() bool { return o.Upper == "" }

// ParseOverlayOptions reads an overlayfs/fuse-overlayfs style option string
// ("lowerdir=A:B,upperdir=U,workdir=W,...") into o. Options fuse-overlayfs
// accepts that strata does not need are accepted and ignored, so that
// containers-storage's mount_program can point at strata; unknown options
// are an error naming the option.
func ParseOverlayOptions(o *Options, spec string) error {
	for _, opt := range splitOptions(spec) {
		key, val, hasVal := strings.Cut(opt, "=")
		switch key {
		case "lowerdir":
			// overlayfs escapes ':' in paths as "\:"; "::" separates data-only lowers (ignored).
			o.Lowers = append(o.Lowers, splitLowerdir(val)...)
		case "upperdir":
			o.Upper = val
		case "workdir":
			o.Work = val
		case "userxattr":
			o.UserXattr = true
		case "redirect_dir":
			o.RedirectDir = val == "on" || val == "follow"
		case "xattr_permissions":
			if val != "0" {
				o.Ownership = OwnershipXattr
			}
		case "allow_other":
			o.AllowOther = true
		case "fsname":
			o.FsName = val
		case "debug":
			o.Debug = true
		case "ro":
			o.Upper, o.Work = "", ""
		case "nopassthrough":
			o.Speed.Passthrough = false
		case "nokeepcache":
			o.Speed.KeepCache = false
		case "nocachereaddir":
			o.Speed.CacheReaddir = false
		case "nosplice":
			o.Speed.Splice = false
		case "nowriteback":
			o.Speed.Writeback = false
		case "writeback":
			o.Speed.Writeback = true
		case "acl", "noacl":
			o.Speed.Acl = key == "acl"
		case "killprivv2", "nokillprivv2":
			o.Speed.KillprivV2 = key == "killprivv2"
		case "readdirplusauto", "noreaddirplusauto":
			o.Speed.ReaddirplusAuto = key == "readdirplusauto"
		case "zeroopen":
			o.Speed.Opens = OpensZero
		case "nozeroopen":
			o.Speed.Opens = OpensHandles
		case "zeroopendir", "nozeroopendir":
			o.Speed.ZeroOpendir = key == "zeroopendir"
		case "lowertimeout", "uppertimeout":
			d, err := time.ParseDuration(val)
			if err != nil {
				secs, err2 := strconv.ParseFloat(val, 64)
				if err2 != nil {
					return fmt.Errorf("mount option %s=%s: want a duration such as 1h or 0", key, val)
				}
				d = time.Duration(secs * float64(time.Second))
			}
			if key == "lowertimeout" {
				o.Speed.LowerTimeout = d
			} else {
				o.Speed.UpperTimeout = d
			}
		case "suid", "nosuid", "dev", "nodev", "exec", "noexec":
			o.MountFlags = append(o.MountFlags, key)
		case "rw",
			"default_permissions", "index", "metacopy", "volatile", "xino",
			"squash_to_root", "squash_to_uid", "squash_to_gid", "uidmapping", "gidmapping",
			"static_nlink", "noatime", "relatime", "nodiratime", "context", "timeout", "threaded",
			"fast_ino", "plugins", "nfs_export":
			_ = hasVal // accepted for compatibility; strata decides these itself
		default:
			return fmt.Errorf("unknown mount option %q", opt)
		}
	}
	return nil
}

func splitOptions(spec string) []string {
	var out []string
	for _, s := range strings.Split(spec, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func splitLowerdir(val string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(val); i++ {
		switch {
		case val[i] == '\\' && i+1 < len(val):
			i++
			cur.WriteByte(val[i])
		case val[i] == ':':
			if cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(val[i])
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// Validate checks the layer paths before anything is mounted or written,
// and returns an error that names the offending option and path.
func (o *Options) Validate() error {
	if len(o.Lowers) == 0 {
		return fmt.Errorf("lowerdir: at least one lower directory is required")
	}
	for i, l := range o.Lowers {
		abs, err := checkDir("lowerdir", l)
		if err != nil {
			return err
		}
		o.Lowers[i] = abs
	}
	if o.Upper == "" && o.Work != "" {
		return fmt.Errorf("workdir %s: given without upperdir", o.Work)
	}
	if o.Upper == "" {
		return nil
	}
	if o.Work == "" {
		return fmt.Errorf("upperdir %s: workdir is required with upperdir", o.Upper)
	}
	var err error
	if o.Upper, err = checkDir("upperdir", o.Upper); err != nil {
		return err
	}
	if o.Work, err = checkDir("workdir", o.Work); err != nil {
		return err
	}
	for _, l := range o.Lowers {
		if within(o.Upper, l) || within(l, o.Upper) {
			return fmt.Errorf("upperdir %s: overlaps lowerdir %s", o.Upper, l)
		}
	}
	if within(o.Work, o.Upper) || within(o.Upper, o.Work) {
		return fmt.Errorf("workdir %s: must not overlap upperdir %s", o.Work, o.Upper)
	}
	if mounts.Dev(o.Work) != mounts.Dev(o.Upper) {
		return fmt.Errorf("workdir %s: must be on the same filesystem as upperdir %s", o.Work, o.Upper)
	}
	return nil
}

func checkDir(option, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", option, path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", option, path, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s %s: not a directory", option, path)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	return abs, nil
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}
