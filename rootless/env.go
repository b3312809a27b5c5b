package rootless

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// buildEnv layers the environment as Docker does: a default PATH, the
// image's Env, --env-file files in order, then -e flags; later wins.
// "-e KEY" without a value copies KEY from strata's own environment and
// is dropped when unset there.
func buildEnv(o Options) ([]string, error) {
	var env []string
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		for i, e := range env {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				env[i] = kv
				return
			}
		}
		env = append(env, kv)
	}
	set(defaultPath)
	for _, kv := range o.Config.Env {
		set(kv)
	}
	var flags []string
	for _, file := range o.EnvFiles {
		lines, err := readEnvFile(file)
		if err != nil {
			return nil, err
		}
		flags = append(flags, lines...)
	}
	flags = append(flags, o.Env...)
	for _, kv := range flags {
		k, _, hasVal := strings.Cut(kv, "=")
		if k == "" || strings.ContainsAny(k, " \t\x00") {
			return nil, fmt.Errorf("environment variable %q: bad name", kv)
		}
		if !hasVal {
			v, ok := os.LookupEnv(k)
			if !ok {
				continue
			}
			kv = k + "=" + v
		}
		set(kv)
	}
	return env, nil
}

func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	return out, nil
}

// ParseVolumes checks -v host:ctr[:ro|rw] specs; host paths must exist.
func ParseVolumes(specs []string) ([]BindMount, error) {
	var out []BindMount
	for _, s := range specs {
		parts := strings.Split(s, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("-v %q: want HOST:CONTAINER[:ro], both absolute paths", s)
		}
		m := BindMount{Source: parts[0], Target: filepath.Clean(parts[1])}
		if len(parts) == 3 {
			switch parts[2] {
			case "ro":
				m.ReadOnly = true
			case "rw", "":
			default:
				return nil, fmt.Errorf("-v %q: unknown option %q (want ro or rw)", s, parts[2])
			}
		}
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return nil, fmt.Errorf("-v %q: both paths must be absolute", s)
		}
		if m.Target == "/" {
			return nil, fmt.Errorf("-v %q: cannot mount over the container's /", s)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return nil, fmt.Errorf("-v %q: host path %s: %w", s, m.Source, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func checkUserSpec(spec string) error {
	u, g, _ := strings.Cut(spec, ":")
	if u == "" || strings.ContainsAny(spec, " \t\n/") || strings.Count(spec, ":") > 1 || (strings.Contains(spec, ":") && g == "") {
		return fmt.Errorf("-u %q: want USER[:GROUP], names or numeric ids", spec)
	}
	return nil
}
