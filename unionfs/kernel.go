package unionfs

import (
	"strings"

	"golang.org/x/sys/unix"
)

// KernelMount is a kernel overlayfs mount planned as data, so tests and the
// benchmark can treat kernel overlayfs and strata alike. Execute it with
// unix.Mount(m.Source, target, m.FSType, 0, m.Data).
type KernelMount struct {
	Source string
	FSType string
	Data   string
}

// PlanKernelOverlay returns the overlayfs mount equivalent to o.
// The kernel's defaults stay (on this host index=off, which breaks hard links
// on copy-up; append ",index=on" to Data to keep them, as strata always does);
// userxattr follows o.UserXattr.
func PlanKernelOverlay(o Options) KernelMount {
	esc := make([]string, len(o.Lowers))
	for i, l := range o.Lowers {
		esc[i] = strings.ReplaceAll(l, ":", `\:`)
	}
	data := []string{"lowerdir=" + strings.Join(esc, ":")}
	if o.Upper != "" {
		data = append(data, "upperdir="+o.Upper, "workdir="+o.Work)
	}
	if o.UserXattr {
		data = append(data, "userxattr")
	}
	if o.RedirectDir {
		data = append(data, "redirect_dir=on")
	}
	return KernelMount{Source: "overlay", FSType: "overlay", Data: strings.Join(data, ",")}
}

// Mount performs the planned mount at target.
func (m KernelMount) Mount(target string) error {
	return unix.Mount(m.Source, target, m.FSType, 0, m.Data)
}
