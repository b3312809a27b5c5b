package tests

import (
	"strings"
	"testing"

	"github.com/strata-run/strata/tests/harness"
)

// TestContainerRefs: an empty ref names no container (it is a prefix of
// every ID) for rm, commit and diff, even when one container exists; bad
// names are refused before anything is made.
func TestContainerRefs(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	e.ok("import", e.rootfs, "base")
	e.ok("run", "--name", "only", "base", "true")
	for round, want := range []int{1, 2} {
		for _, args := range [][]string{{"rm", ""}, {"rm", "-f", ""}, {"commit", "", "img"}, {"diff", ""}} {
			r := e.run("", args...)
			if r.code == 0 || !strings.Contains(r.stderr, `""`) || !strings.Contains(r.stderr, "empty") {
				t.Errorf("round %d: strata %q: exit %d, stderr %q; want an error naming the empty ref", round, args, r.code, r.stderr)
			}
		}
		if n := len(e.containers()); n != want {
			t.Fatalf("round %d: %d containers left, want %d", round, n, want)
		}
		if round == 0 {
			e.ok("run", "--name", "other", "base", "true")
		}
	}

	for _, name := range []string{"bad/name", "../up", "a b", ".hidden", "-dash", "x:y"} {
		r := e.run("", "run", "--name="+name, "base", "true")
		if r.code != 125 || !strings.Contains(r.stderr, `"`+name+`"`) {
			t.Errorf("run --name %q: exit %d, stderr %q; want 125 and an error naming it", name, r.code, r.stderr)
		}
	}
	if n := len(e.containers()); n != 2 {
		t.Errorf("bad names made containers: %d, want 2", n)
	}
	e.ok("run", "--rm", "--name", "Good_1.x-y", "base", "true")
	e.ok("rm", "only", "other")
}
