package rootless

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-run/strata/image"
)

// The container side of diff and commit: which image a container runs,
// which of its files are the runtime's own, how its upper is read with the
// owners the container saw. image/ turns the upper into a layer.

// InitFiles are the files the runtime writes into a container's init
// layer; should they show up in an upper, diff and commit still leave them
// out, so one container's identity never leaks into an image.
var InitFiles = []string{"etc/hosts", "etc/resolv.conf", "etc/hostname"}

func initSkip() map[string]bool {
	skip := map[string]bool{}
	for _, f := range InitFiles {
		skip[f] = true
	}
	return skip
}

// ContainerImage reads the image container c runs from <dir>/image: the
// first line that names an image in the store (a name, or the ID rmi -f
// adds when it takes the names away).
func ContainerImage(store *image.Store, c Container) (*image.Image, error) {
	p := filepath.Join(c.Dir, "image")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var firstErr error
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			img, err := store.Resolve(l)
			if err == nil {
				return img, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, firstErr)
	}
	return nil, fmt.Errorf("container %s: %s names no image", c.ID, p)
}

// Diff lists what container ref (under root) changed relative to its image.
func Diff(store *image.Store, root, ref string) ([]image.Change, error) {
	c, err := Find(root, ref)
	if err != nil {
		return nil, err
	}
	base, err := ContainerImage(store, c)
	if err != nil {
		return nil, err
	}
	return image.DiffDir(filepath.Join(c.Dir, "upper"), base, initSkip())
}

// Commit turns the upper of container ref into a new layer on top of its
// image and names the result name. With pause, a running container's
// processes are stopped while the layer is read (as podman commit does):
// the walk is safe against a container that races it anyway (it never
// follows a symlink), but a paused one gives a consistent layer. When ctx
// ends (^C), the container is resumed at once and the commit fails.
func Commit(ctx context.Context, store *image.Store, root, ref, name string, pause bool) (*image.Image, error) {
	c, err := Find(root, ref)
	if err != nil {
		return nil, err
	}
	base, err := ContainerImage(store, c)
	if err != nil {
		return nil, err
	}
	if pause {
		resume, err := Pause(c.ID)
		if err != nil {
			return nil, err
		}
		done := make(chan struct{})
		stopped := make(chan error, 1)
		go func() {
			select {
			case <-ctx.Done():
			case <-done:
			}
			stopped <- resume()
		}()
		defer func() {
			close(done)
			<-stopped
		}()
	}
	upper := filepath.Join(c.Dir, "upper")
	tarPath, err := layerTarOfUpper(ctx, store, upper)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.ID, err)
	}
	defer os.Remove(tarPath)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.ID, err)
	}
	return store.CommitLayer(base, tarPath, name)
}

// EnvTarUpper marks the re-exec that writes a container's upper as a
// layer tar from inside a user namespace (see TarUpperChild).
const EnvTarUpper = "STRATA_TAR_UPPER"

// layerTarOfUpper writes the layer tar of upper into the store's tmp dir.
//
// A rootless container with subordinate ids leaves files owned by those
// ids in its upper, some of them private to those ids. So a user with
// /etc/subuid ranges writes the tar from a user namespace mapped as the
// runtime maps containers, where it is root over all those ids and
// records the container's own owners; where that fails it reads from the
// host, turning host ids into container ids through the same maps.
func layerTarOfUpper(ctx context.Context, store *image.Store, upper string) (string, error) {
	plan, err := planIDs(false)
	if err != nil {
		return "", err
	}
	opts := image.LayerOptions{Overlay: true, Skip: initSkip()}
	if !plan.helpers {
		opts.UIDs, opts.GIDs = idRanges(plan.uids), idRanges(plan.gids)
		return store.LayerTar(upper, opts)
	}
	f, err := store.TempLayerFile()
	if err != nil {
		return "", err
	}
	tarPath := f.Name()
	f.Close()
	nsErr := runInUserNS(ctx, plan, EnvTarUpper, upper, tarPath)
	if nsErr == nil {
		return tarPath, nil
	}
	os.Remove(tarPath)
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	opts.UIDs, opts.GIDs = idRanges(plan.uids), idRanges(plan.gids)
	p, err := store.LayerTar(upper, opts)
	if err != nil {
		return "", fmt.Errorf("%w; from the host: %w", nsErr, err)
	}
	return p, nil
}

// TarUpperChild is the re-exec entry of layerTarOfUpper, in the user
// namespace: args are the upper dir and the tar file to write.
func TarUpperChild(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("tar upper: want UPPER OUT, got %q", args)
	}
	if err := waitMapped(); err != nil {
		return fmt.Errorf("tar upper: %w", err)
	}
	f, err := os.OpenFile(args[1], os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("tar upper: %w", err)
	}
	err = image.WriteLayerTar(f, args[0], image.LayerOptions{Overlay: true, Skip: initSkip()})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ImportIDs are the id ranges that record a directory's files, imported by
// this user, with the owners a container of theirs would see.
func ImportIDs() (uids, gids []image.IDRange, err error) {
	plan, err := planIDs(false)
	if err != nil {
		return nil, nil, err
	}
	if os.Getuid() == 0 {
		return nil, nil, nil
	}
	return idRanges(plan.uids), idRanges(plan.gids), nil
}

func idRanges(m []IDMap) []image.IDRange {
	out := make([]image.IDRange, 0, len(m))
	for _, e := range m {
		out = append(out, image.IDRange{Container: e.ContainerID, Host: e.HostID, Size: e.Size})
	}
	return out
}

// ImageUsers are the containers under root as holders of images: each
// container's <dir>/image names the image it runs (see state.go), and rmi
// and prune must leave what they name alone.
func ImageUsers(root string) image.ImageUsers { return containerImages{root: root} }

type containerImages struct{ root string }

func (c containerImages) ImageRefs() (map[string][]string, error) {
	dir := containersDir(c.root)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name(), "image")
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out[e.Name()] = append(out[e.Name()], l)
			}
		}
	}
	return out, nil
}

// KeepImage appends id to the container's image file: ContainerImage then
// still finds the image once its names are gone.
func (c containerImages) KeepImage(id, imageID string) error {
	p := filepath.Join(containersDir(c.root), id, "image")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("update %s: %w", p, err)
	}
	_, err = f.WriteString(imageID + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("update %s: %w", p, err)
	}
	return nil
}
