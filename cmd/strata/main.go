// Command strata is a FUSE union filesystem and a rootless container runtime
// in one static binary.
//
// main stays thin: it routes re-exec entry points (processes strata starts of
// itself inside new namespaces) before cobra parses anything, because those
// processes must not run the CLI again, and then hands over to the root command.
package main

import (
	"os"
)

// reexecEntries maps an environment variable to the entry point a re-exec of
// /proc/self/exe runs when that variable is set. Each file that starts such a
// child registers its entry from init(), so main never needs editing.
var reexecEntries = map[string]func(){}

func registerReexec(envVar string, entry func()) {
	if _, dup := reexecEntries[envVar]; dup {
		panic("duplicate re-exec entry " + envVar)
	}
	reexecEntries[envVar] = entry
}

func main() {
	for envVar, entry := range reexecEntries {
		if _, ok := os.LookupEnv(envVar); ok {
			entry()
			return
		}
	}
	os.Exit(execute(os.Args[1:]))
}
