package rootless

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeInitLayer fills the per-container init layer, a lower stacked
// between the upper and the image. Keeping these files out of the upper
// means a commit of the upper never captures one host's DNS or hostname.
func writeInitLayer(dir, hostname, name string, net Network) error {
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return fmt.Errorf("init layer %s: %w", etc, err)
	}
	os.Chmod(etc, 0o755)
	files := map[string][]byte{
		"hostname":    []byte(hostname + "\n"),
		"hosts":       net.Hosts(hostname, name),
		"resolv.conf": net.ResolvConf(),
	}
	for name, data := range files {
		p := filepath.Join(etc, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("init layer %s: %w", p, err)
		}
	}
	return nil
}
