package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/image"
	"github.com/strata-run/strata/rootless"
)

// newRunCmd returns `strata run`; start runs the container (rootless.Run,
// or a stand-in when a test checks the flags).
func newRunCmd(g *globalOptions, start func(rootless.Options) (int, error)) *cobra.Command {
	var o rootless.Options
	var rootfs, entrypoint string
	var securityOpts []string
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]\n  strata run [flags] --rootfs DIR [--] COMMAND [ARG...]",
		Short: "Run a command in a new rootless container",
		Long: `Run a command in a new container, as you, without root: user, mount, PID,
UTS, IPC and cgroup namespaces, the image's layers stacked by strata's union
filesystem under a per-container writable layer.

Exit status: the command's; 125 when strata itself fails, 126 when the
command cannot be executed, 127 when it is not found, 128+N when a signal N
ended it.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Root = g.storeRoot()
			if cmd.Flags().Changed("entrypoint") {
				ep := []string{}
				if entrypoint != "" {
					ep = []string{entrypoint}
				}
				o.Entrypoint = &ep
			}
			seccomp, err := parseSecurityOpts(securityOpts)
			if err != nil {
				return withExitCode(125, err)
			}
			o.Seccomp = seccomp
			if err := resolveImage(&o, rootfs, args); err != nil {
				return withExitCode(125, err)
			}
			stderr := cmd.ErrOrStderr()
			o.Warn = func(msg string) { fmt.Fprintln(stderr, "strata: warning:", msg) }
			o.Cgroups = cgroupConfig(o.Cgroups.Parent)
			code, err := start(o)
			return withExitCode(code, err)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after IMAGE belong to the command
	f.StringVar(&rootfs, "rootfs", "", "use directory `DIR` as the only (read-only) lower layer instead of an image")
	f.StringVar(&o.Name, "name", "", "name the container")
	f.StringVar(&o.Hostname, "hostname", "", "container host name (default: the short container id)")
	f.BoolVar(&o.Remove, "rm", false, "delete the container when it exits")
	f.BoolVar(&o.ReadOnly, "read-only", false, "mount the container's root filesystem read-only")
	f.BoolVarP(&o.Stdin, "interactive", "i", false, "keep stdin connected")
	f.BoolVarP(&o.TTY, "tty", "t", false, "allocate a pseudo-terminal")
	f.BoolVar(&o.Init, "init", false, "run a minimal init as PID 1 that forwards signals and reaps zombies")
	f.StringArrayVarP(&o.Env, "env", "e", nil, "set `KEY=VALUE` (or KEY, copied from your environment)")
	f.StringArrayVar(&o.EnvFiles, "env-file", nil, "read KEY=VALUE lines from `FILE`")
	f.StringVarP(&o.WorkingDir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.User, "user", "u", "", "run as `USER[:GROUP]` (names from the image's /etc/passwd and /etc/group, or ids)")
	f.StringArrayVarP(&o.Volumes, "volume", "v", nil, "bind mount `HOST:CONTAINER[:ro]`")
	f.StringVar(&o.Net, "net", "", "network: pasta, slirp4netns, builtin (each [:allow_host_loopback=true]), none (loopback only) or host (default: the fastest user-mode one installed)")
	f.StringArrayVarP(&o.Publish, "publish", "p", nil, "publish `[HOSTIP:][HOSTPORT:]PORT[/tcp|/udp]` (ranges as START-END) on the host")
	f.BoolVarP(&o.PublishAll, "publish-all", "P", false, "publish the image's exposed ports on free host ports")
	f.StringVar(&o.UserNS, "userns", "", "keep-id: map your user to the same id inside (default: you are root inside)")
	f.StringArrayVar(&o.CapAdd, "cap-add", nil, "add a capability (or ALL)")
	f.StringArrayVar(&o.CapDrop, "cap-drop", nil, "drop a capability (or ALL)")
	f.StringArrayVar(&securityOpts, "security-opt", nil, "seccomp=unconfined turns the default seccomp filter off")
	f.StringVar(&entrypoint, "entrypoint", "", "override the image's entrypoint")
	addLimitFlags(f, &o.Limits, &o.Cgroups)
	return cmd
}

func parseSecurityOpts(opts []string) (seccomp bool, err error) {
	seccomp = true
	for _, s := range opts {
		switch s {
		case "seccomp=unconfined":
			seccomp = false
		case "no-new-privileges", "no-new-privileges=true", "no-new-privileges:true":
			// always on
		default:
			return false, fmt.Errorf("--security-opt %q: supported are seccomp=unconfined and no-new-privileges", s)
		}
	}
	return seccomp, nil
}

// resolveImage fills the layers, image config and command from --rootfs or
// from IMAGE in the store.
func resolveImage(o *rootless.Options, rootfs string, args []string) error {
	if rootfs != "" {
		abs, err := filepath.Abs(rootfs)
		if err != nil {
			return fmt.Errorf("--rootfs %s: %w", rootfs, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return fmt.Errorf("--rootfs %s: not a directory", rootfs)
		}
		o.Image, o.Layers, o.Args = "rootfs:"+abs, []string{abs}, args
		return nil
	}
	if len(args) == 0 {
		return errors.New("give an IMAGE (see strata images) or --rootfs DIR")
	}
	store, err := image.Open(o.Root)
	if err != nil {
		return err
	}
	img, err := store.Resolve(args[0])
	if err != nil {
		return fmt.Errorf("%w (pull it first: strata pull %s)", err, args[0])
	}
	cfg := img.Config()
	o.Image = img.Name()
	o.Layers = img.Layers()
	o.Config = rootless.ImageConfig{Env: cfg.Env, WorkingDir: cfg.WorkingDir, User: cfg.User,
		Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd}
	for p := range cfg.ExposedPorts {
		o.Config.ExposedPorts = append(o.Config.ExposedPorts, p)
	}
	o.Args = args[1:]
	if strings.TrimSpace(o.Image) == "" {
		o.Image = args[0]
	}
	return nil
}
