package bench

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// wctx is what a workload sees: the merged root and the tree's facts.
type wctx struct {
	root    string
	lower   string
	upper   string
	scratch string
	tree    *Tree
	man     *manifest
	seed    int64
	pid     int // the FUSE server, for memory samples; 0 for in-kernel
	extra   map[string]float64
}

// workload is one measured operation. Writes is nil for workloads that
// only read; otherwise it names the lower files the workload modifies in
// place, which the native backend must copy instead of hard-linking.
type workload struct {
	Name, Desc string
	Quick      bool // part of --quick
	Cold       bool // drop the page, dentry and inode caches before timing
	Warm       bool // run once untimed first, so caches are hot
	// Full1M: runs on the 1M-file tree, and only when named in
	// --workloads (it takes minutes per run on FUSE).
	Full1M bool
	// Variants: strata's feature-off variants run here by default. They
	// skip the slow write-heavy workloads to keep a full run in budget.
	Variants bool
	Writes   func(c *wctx) []string
	Prepare  func(c *wctx) error
	Run      func(c *wctx) error
	// Reference, run only on the native backend, times what the workload
	// should be compared with (cp --reflink=auto for copy-up).
	Reference func(c *wctx) (string, float64, error)
}

func noWrites(*wctx) []string { return []string{} }

var workloads = []*workload{
	{Name: "stat-cold", Desc: "lstat every entry after dropping caches", Quick: true, Cold: true, Run: statAll},
	{Name: "stat-warm", Variants: true, Desc: "lstat every entry, caches hot", Quick: true, Warm: true, Run: statAll},
	{Name: "walk", Variants: true, Desc: "readdir + lstat + readlink over the tree (ls -lR), caches hot", Quick: true, Warm: true, Run: walk},
	{Name: "read-cold", Desc: "read every file of the tree (not the big file) after dropping caches", Cold: true, Run: readAll},
	{Name: "read-warm", Variants: true, Desc: "read every file of the tree (not the big file), caches hot", Quick: true, Warm: true, Run: readAll},
	{Name: "seqread", Variants: true, Desc: "sequential 1 MiB reads of the big file, cached", Quick: true, Warm: true, Run: seqRead},
	{Name: "randread", Variants: true, Desc: "20000 random 4 KiB preads in the big file, cached", Quick: true, Warm: true, Run: randRead},
	{Name: "untar", Desc: "extract the tree's tarball into the mount (creates)", Writes: noWrites, Run: untar},
	{Name: "copyup-small", Variants: true, Desc: "append one byte to 1000 lower files (copy-up)", Quick: true, Writes: copyupSmallFiles, Run: copyupSmall},
	{Name: "copyup-big", Desc: "append one byte to the big lower file, then syncfs", Writes: func(c *wctx) []string { return []string{c.tree.BigFile} },
		Prepare: warmBig, Run: copyupBig, Reference: reflinkCopy},
	{Name: "rm-rf", Desc: "rm -rf of the biggest lower dir (whiteouts)", Quick: true, Writes: noWrites, Run: rmrf},
	{Name: "build", Desc: "compile a generated C project (8 units by default) with gcc, two at a time, inside the mount", Writes: noWrites, Run: build},
	{Name: "walk-1m", Desc: "walk a 1M-file tree, sampling the server's memory", Full1M: true, Run: walk1M},
}

// WorkloadNames lists every workload in table order.
func WorkloadNames() []string {
	var out []string
	for _, w := range workloads {
		out = append(out, w.Name)
	}
	return out
}

func workloadByName(name string) *workload {
	for _, w := range workloads {
		if w.Name == name {
			return w
		}
	}
	return nil
}

func statAll(c *wctx) error {
	var st unix.Stat_t
	for _, e := range c.man.entries {
		if err := unix.Lstat(c.root+"/"+e.path, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", e.path, err)
		}
	}
	return nil
}

// walk does what ls -lR does: list each directory, lstat each entry,
// read each symlink.
func walk(c *wctx) error {
	_, err := walkDir(c.root, nil)
	return err
}

func walkDir(dir string, visit func()) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", dir, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("readdir %s: %w", dir, err)
	}
	n := 0
	var st unix.Stat_t
	buf := make([]byte, 4096)
	for _, name := range names {
		p := dir + "/" + name
		if err := unix.Lstat(p, &st); err != nil {
			return n, fmt.Errorf("lstat %s: %w", p, err)
		}
		n++
		if visit != nil {
			visit()
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			unix.Readlink(p, buf)
		case unix.S_IFDIR:
			m, err := walkDir(p, visit)
			n += m
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func readAll(c *wctx) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	for _, e := range c.man.entries {
		// The big file has workloads of its own.
		if e.kind != 'f' || strings.HasPrefix(e.path, bigDir+"/") {
			continue
		}
		if err := readFile(c.root+"/"+e.path, *bp); err != nil {
			return err
		}
	}
	return nil
}

func readFile(p string, buf []byte) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if n == 0 {
			return nil
		}
	}
}

func seqRead(c *wctx) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	return readFile(filepath.Join(c.root, c.tree.BigFile), *bp)
}

func randRead(c *wctx) error {
	f, err := os.Open(filepath.Join(c.root, c.tree.BigFile))
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(uint64(c.seed), 3))
	blocks := c.tree.BigSize / 4096
	buf := make([]byte, 4096)
	for i := 0; i < 20000; i++ {
		if _, err := f.ReadAt(buf, r.Int64N(blocks)*4096); err != nil {
			return fmt.Errorf("pread %s: %w", f.Name(), err)
		}
	}
	return nil
}

// untar extracts with plain syscalls and no chown, so that the same code
// runs as root and inside a user namespace that maps a single id.
func untar(c *wctx) error {
	f, err := os.Open(c.tree.Tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	dst := filepath.Join(c.root, "bench-untar")
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	buf := make([]byte, 256<<10)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("untar %s: %w", c.tree.Tarball, err)
		}
		p := filepath.Join(dst, h.Name)
		mode := uint32(h.Mode & 0o7777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(p, os.FileMode(mode)|0o700); err != nil && !os.IsExist(err) {
				return err
			}
		case tar.TypeReg:
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(mode))
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(out, tr, buf)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("untar %s: %w", p, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(dst, h.Linkname), p); err != nil {
				return err
			}
		}
	}
}

func copyupSmallFiles(c *wctx) []string { return c.man.pick(1000, c.seed) }

func copyupSmall(c *wctx) error {
	for _, p := range copyupSmallFiles(c) {
		if err := appendByte(filepath.Join(c.root, p)); err != nil {
			return err
		}
	}
	return nil
}

func appendByte(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("append %s: %w", p, err)
	}
	_, err = f.Write([]byte{'\n'})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append %s: %w", p, err)
	}
	return nil
}

// warmBig reads the big file through the lower and flushes dirty data, so
// that copy-up timing starts from the same place on every backend.
func warmBig(c *wctx) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	if err := readFile(filepath.Join(c.lower, c.tree.BigFile), *bp); err != nil {
		return err
	}
	return syncfs(c.upper)
}

func copyupBig(c *wctx) error {
	if err := appendByte(filepath.Join(c.root, c.tree.BigFile)); err != nil {
		return err
	}
	if err := syncfs(c.root); err != nil {
		return err
	}
	return syncfs(c.upper)
}

// reflinkCopy is the target copy-up of the big file is measured against:
// cp --reflink=auto onto the upper's filesystem, then syncfs.
func reflinkCopy(c *wctx) (string, float64, error) {
	dst := filepath.Join(c.scratch, "reflink-ref")
	os.Remove(dst)
	t := startTimer()
	if err := run("cp", "--reflink=auto", filepath.Join(c.lower, c.tree.BigFile), dst); err != nil {
		return "", 0, err
	}
	if err := syncfs(c.scratch); err != nil {
		return "", 0, err
	}
	s := t.seconds()
	// Freed blocks are the next run's business only after they are synced.
	os.Remove(dst)
	return "cp_reflink_auto_s", s, syncfs(c.scratch)
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil && err != unix.ENOSYS {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

func rmrf(c *wctx) error {
	if c.tree.RmDir == "" {
		return errors.New("rm-rf: tree has no subdirectory")
	}
	return os.RemoveAll(filepath.Join(c.root, c.tree.RmDir))
}

// build compiles the generated C project two units at a time and links
// it: many small reads of headers, small object writes, exec of gcc.
func build(c *wctx) error {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return notRunError("gcc not installed")
	}
	dir := filepath.Join(c.root, c.tree.BuildDir)
	srcs, err := filepath.Glob(filepath.Join(dir, "*.c"))
	if err != nil || len(srcs) == 0 {
		return fmt.Errorf("build: no sources in %s", dir)
	}
	jobs := make(chan string)
	errs := make(chan error, len(srcs))
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				out, err := exec.Command(gcc, "-O0", "-c", "-I", filepath.Join(dir, "include"), "-o",
					strings.TrimSuffix(s, ".c")+".o", s).CombinedOutput()
				if err != nil {
					errs <- fmt.Errorf("gcc %s: %w: %s", s, err, out)
				}
			}
		}()
	}
	for _, s := range srcs {
		jobs <- s
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	objs, _ := filepath.Glob(filepath.Join(dir, "*.o"))
	if out, err := exec.Command(gcc, append([]string{"-o", filepath.Join(dir, "prog")}, objs...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("link %s: %w: %s", dir, err, out)
	}
	return nil
}

// walk1M walks the big synthetic tree and samples the server's resident
// memory at fixed fractions of the walk: flat samples mean the server's
// caches are bounded.
func walk1M(c *wctx) error {
	total := len(c.man.entries)
	marks := []int{total / 10, total / 4, total / 2, 3 * total / 4, total - 1}
	seen, next := 0, 0
	_, err := walkDir(c.root, func() {
		if next < len(marks) && seen >= marks[next] {
			if c.pid > 0 {
				c.extra["rss_kib_at_"+strconv.Itoa(100*marks[next]/max(total, 1))+"pct"] = float64(procStatusKiB(c.pid, "VmRSS:"))
			}
			next++
		}
		seen++
	})
	return err
}

// notRunError marks a failure as "this host cannot run it", not a bug.
type notRunError string

func (e notRunError) Error() string { return string(e) }
