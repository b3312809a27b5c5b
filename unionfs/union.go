package unionfs

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// layer is one directory of the stack, held open so that every access is
// relative to its fd and never re-resolves the layer's own path.
type layer struct {
	path  string
	fd    int
	dev   uint64
	upper bool
	// inoTag separates inode numbers of layers on different filesystems.
	inoTag uint64
	// override: entries may carry user.containers.override_stat (decided
	// once from the layer's root, as fuse-overlayfs does).
	override bool
	// procPrefix is "/proc/self/fd/FD/", made once: xattr calls on layer
	// entries are on the lookup path.
	procPrefix string
}

// unionFS is the state shared by every node of one mount.
type unionFS struct {
	opts   Options
	log    *slog.Logger
	layers []*layer // upper first when there is one, then lowers top first
	upper  *layer   // nil when read-only
	workFd int      // WORK/work: temporaries, renamed into place
	idxFd  int      // the index of hard-linked copy-ups (see index.go)

	xattrPrefix string // "trusted.overlay." or "user.overlay."
	opaqueXattr string
	// charWhiteouts: the upper can hold 0/0 character devices; else strata
	// writes ".wh.NAME" files, the OCI format it also reads in lowers.
	charWhiteouts bool
	realOwners    bool // chown/chmod on disk, not in override_stat
	// asRoot: the server runs as root (of its user namespace); euid/egid are
	// who owns what it creates before any chown.
	asRoot     bool
	euid, egid uint32

	copyMu sync.Mutex // serialises copy-ups, whiteouts and renames in the upper
	// treeMu makes renames atomic for everything that turns go-fuse's tree
	// into an upper path (read-held from making the path to resolving it);
	// a rename holds it from its change on disk until go-fuse's tree shows
	// it (see holdTreeForRename). renameOwner is the holding request.
	treeMu      sync.RWMutex
	renameOwner atomic.Value
	tmpSeq      atomic.Uint64

	// copiedUp maps an upper inode number to the number its lower origin
	// had, so a node keeps its st_ino across copy-up even if the kernel
	// forgets and looks it up again.
	inoMu    sync.Mutex
	copiedUp map[uint64]uint64
	// index caches entries of the index dir, by name; indexByIno finds
	// them from an upper name linked to the copy.
	index      map[string]*indexEntry
	indexByIno map[uint64]string
	// kernelIndex: the index is overlayfs's own (WORK/index, names and
	// xattrs as the kernel writes them with index=on).
	kernelIndex bool

	root *node

	// nodes: the live node of each inode number (see newChild).
	nodesMu sync.Mutex
	nodes   map[uint64]*node
}

func newUnionFS(opts Options) (*unionFS, error) {
	u := &unionFS{opts: opts, log: opts.Logger, workFd: -1, idxFd: -1,
		copiedUp: map[uint64]uint64{}, nodes: map[uint64]*node{}, index: map[string]*indexEntry{}, indexByIno: map[uint64]string{}}
	u.renameOwner.Store(noRenameOwner)
	// The server creates files for callers: modes must arrive unmasked.
	syscall.Umask(0)
	u.euid, u.egid = uint32(os.Geteuid()), uint32(os.Getegid())
	u.asRoot = u.euid == 0
	if opts.Upper != "" {
		l, err := openLayer(opts.Upper, true)
		if err != nil {
			return nil, fmt.Errorf("upperdir %s: %w", opts.Upper, err)
		}
		u.upper = l
		u.layers = append(u.layers, l)
	}
	for _, p := range opts.Lowers {
		l, err := openLayer(p, false)
		if err != nil {
			u.close()
			return nil, fmt.Errorf("lowerdir %s: %w", p, err)
		}
		u.layers = append(u.layers, l)
	}
	u.tagInodes()
	if err := u.probe(); err != nil {
		u.close()
		return nil, err
	}
	return u, nil
}

func openLayer(path string, upper bool) (*layer, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// Every layer path is resolved by openat2 (see beneath.go); without
	// it strata cannot keep a container inside its layers.
	if probe, err := openat2Beneath(fd, ".", unix.O_PATH); err != nil {
		unix.Close(fd)
		if err == unix.ENOSYS {
			return nil, fmt.Errorf("openat2 is missing (Linux 5.6 or later is required)")
		}
		return nil, err
	} else {
		unix.Close(probe)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	l := &layer{path: path, fd: fd, dev: st.Dev, upper: upper, procPrefix: "/proc/self/fd/" + strconv.Itoa(fd) + "/"}
	if _, errno := (entry{dir: fd, name: "."}).Getxattr(ovl.OverrideXattr, nil); errno == 0 {
		l.override = true
	}
	return l, nil
}

// tagInodes gives each distinct filesystem a tag in the top bits of inode
// numbers (like overlayfs's xino) unless all layers share one filesystem,
// where the real numbers are already unique.
func (u *unionFS) tagInodes() {
	tags := map[uint64]uint64{}
	for _, l := range u.layers {
		if _, ok := tags[l.dev]; !ok {
			tags[l.dev] = uint64(len(tags))
		}
		l.inoTag = tags[l.dev] << 48
	}
}

// probe decides, by trying, what the upper filesystem lets this process do.
func (u *unionFS) probe() error {
	u.xattrPrefix = ovl.XattrPrefix(u.opts.UserXattr)
	if u.upper == nil {
		u.opaqueXattr = u.xattrPrefix + ovl.Opaque
		u.realOwners = u.opts.Ownership != OwnershipXattr
		return nil
	}
	work, err := unix.Open(u.opts.Work, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("workdir %s: %w", u.opts.Work, err)
	}
	defer unix.Close(work)
	if u.workFd, err = u.workSubdir(work, "work"); err != nil {
		return err
	}
	// Leftovers of an interrupted copy-up are never visible; clear them.
	if errno := clearDir(u.workFd); errno != 0 {
		return fmt.Errorf("workdir %s: clearing work/: %w", u.opts.Work, errno)
	}
	probe := u.workEntry("probe")
	if !u.opts.UserXattr {
		if fd, errno := probe.Open(unix.O_CREAT|unix.O_WRONLY, 0o600); errno == 0 {
			unix.Close(fd)
		}
		if probe.Setxattr(ovl.TrustedPrefix+"probe", []byte("y"), 0) != 0 {
			u.xattrPrefix = ovl.UserPrefix
			u.opts.UserXattr = true
		}
		probe.Unlink(0)
	}
	u.opaqueXattr = u.xattrPrefix + ovl.Opaque
	if err := u.openIndex(work); err != nil {
		return err
	}
	u.charWhiteouts = probe.Mknod(unix.S_IFCHR, 0) == 0
	probe.Unlink(0)
	switch u.opts.Ownership {
	case OwnershipReal:
		u.realOwners = true
	case OwnershipXattr:
		u.realOwners = false
	default:
		u.realOwners = os.Geteuid() == 0 && manyIDsMapped()
	}
	if !u.realOwners {
		u.upper.override = true
	}
	u.log.Info("union ready", "upper", u.opts.Upper, "lowers", u.opts.Lowers,
		"xattrs", u.xattrPrefix, "charWhiteouts", u.charWhiteouts, "realOwners", u.realOwners)
	return nil
}

// workSubdir makes (if need be) and opens WORK/name, refusing anything
// but a real directory on the upper's filesystem: strata empties and
// renames into it, so a symlink there would aim those at its target.
func (u *unionFS) workSubdir(work int, name string) (int, error) {
	if err := unix.Mkdirat(work, name, 0o700); err != nil && err != unix.EEXIST {
		return -1, fmt.Errorf("workdir %s: %s: %w", u.opts.Work, name, err)
	}
	fd, err := openat2Beneath(work, name, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR || err == unix.EXDEV {
			return -1, fmt.Errorf("workdir %s: %s is not a directory of its own (a symlink or a mount?)", u.opts.Work, name)
		}
		return -1, fmt.Errorf("workdir %s: %s: %w", u.opts.Work, name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != u.upper.dev {
		unix.Close(fd)
		return -1, fmt.Errorf("workdir %s: %s is not on the upper directory's filesystem", u.opts.Work, name)
	}
	return fd, nil
}

// clearDir removes everything in the held directory dir.
func clearDir(dir int) syscall.Errno {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err)
	}
	var names []string
	errno := readDirFd(fd, func(e rawDirent) { names = append(names, e.name) })
	unix.Close(fd)
	for _, n := range names {
		if e := removeAllAt(dir, n); e != 0 && errno == 0 {
			errno = e
		}
	}
	return errno
}

// inInitialUserNS reports whether this process is in the host's user
// namespace, where root's mount flags mean what they say.
func inInitialUserNS() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	return err == nil && strings.Join(strings.Fields(string(data)), " ") == "0 0 4294967295"
}

// manyIDsMapped reports whether this user namespace maps more than one uid,
// i.e. whether chown to arbitrary owners can work at all.
func manyIDsMapped() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	var total uint64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 {
			n, _ := strconv.ParseUint(f[2], 10, 64)
			total += n
		}
	}
	return total > 1
}

func (u *unionFS) close() {
	for _, l := range u.layers {
		unix.Close(l.fd)
	}
	u.layers = nil
	if u.workFd >= 0 {
		unix.Close(u.workFd)
	}
	if u.idxFd >= 0 {
		unix.Close(u.idxFd)
	}
	u.workFd, u.idxFd = -1, -1
}

// ino is the union inode number of a backing inode in layer l.
func (u *unionFS) ino(l *layer, raw uint64) uint64 {
	if l.upper {
		u.inoMu.Lock()
		origin, ok := u.copiedUp[raw]
		u.inoMu.Unlock()
		if ok {
			return origin
		}
	}
	return raw | l.inoTag
}

// upperDirIno is the number of a directory with an upper part (upperIno)
// whose topmost lower entry is a directory of l numbered lowerRaw: a
// copied-up directory keeps its origin's number, as overlayfs's does; an
// opaque one is a new directory and keeps its own.
func (u *unionFS) upperDirIno(upperIno uint64, opaque bool, l *layer, lowerRaw uint64) uint64 {
	if opaque {
		return upperIno
	}
	return u.ino(l, lowerRaw)
}

func (u *unionFS) forgetOrigin(upperRaw uint64) {
	u.inoMu.Lock()
	delete(u.copiedUp, upperRaw)
	u.inoMu.Unlock()
}

func (u *unionFS) rememberOrigin(upperRaw, origin uint64) {
	u.inoMu.Lock()
	u.copiedUp[upperRaw] = origin
	u.inoMu.Unlock()
}

func (u *unionFS) mount(mnt string) (*fuse.Server, error) {
	sp := u.opts.Speed
	root := &node{u: u, lower: -1}
	var st unix.Stat_t
	top := u.layers[0]
	if err := unix.Fstat(top.fd, &st); err != nil {
		return nil, err
	}
	if u.upper != nil {
		root.hasUpper = true
	}
	for i, l := range u.layers {
		if !l.upper {
			if root.lower < 0 {
				root.lower = i
			}
			root.dirLowers = append(root.dirLowers, i)
			if u.isOpaque(l, entry{dir: l.fd, name: "."}) {
				break
			}
		}
	}
	u.root = root
	name := u.opts.FsName
	if name == "" {
		name = "strata"
	}
	negT := sp.LowerTimeout
	mo := fuse.MountOptions{
		FsName:               name,
		Name:                 "strata",
		AllowOther:           u.opts.AllowOther,
		DirectMount:          u.opts.DirectMount,
		DirectMountStrict:    u.opts.DirectMount,
		Debug:                u.opts.Debug,
		EnableLocks:          true,
		EnableSymlinkCaching: true,
		DisableSplice:        !sp.Splice,
		MaxWrite:             1 << 20,
		MaxBackground:        64,
		Options:              []string{"default_permissions"},
	}
	if u.upper == nil {
		mo.Options = append(mo.Options, "ro")
	}
	if os.Geteuid() == 0 {
		// A root-run union serves every user, as a kernel overlay would;
		// permissions are the kernel's (default_permissions).
		mo.AllowOther = true
		if inInitialUserNS() {
			// go-fuse turns these into mount(2) flags over its default
			// MS_NOSUID|MS_NODEV.
			mo.Options = append(mo.Options, u.opts.MountFlags...)
		}
	}
	// No global entry or attribute timeouts: each reply sets its own
	// (see setTimeouts), and some must be exactly 0, which go-fuse would
	// otherwise replace with the global value.
	opts := &fs.Options{
		// A mode of 0000 is a mode, not a missing one: shown as 0644 it
		// would let other users read what its owner locked away.
		NullPermissions: true,
		MountOptions:    mo,
		NegativeTimeout: &negT,
		RootStableAttr:  &fs.StableAttr{Ino: u.ino(top, st.Ino), Mode: syscall.S_IFDIR},
	}
	if u.opts.Debug {
		opts.Logger = nil
	}
	start := time.Now()
	raw := renameLocker{RawFileSystem: fs.NewNodeFS(root, opts), u: u}
	srv, err := fuse.NewServer(raw, mnt, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, err
	}
	u.log.Info("mounted", "mountpoint", mnt, "took", time.Since(start))
	return srv, nil
}
