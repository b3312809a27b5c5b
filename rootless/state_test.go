package rootless

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"box", true}, {"a", true}, {"A1_b.c-d", true}, {"0", true},
		{"", false}, {"-x", false}, {".hidden", false}, {"_x", false},
		{"bad/name", false}, {"../up", false}, {"a b", false}, {"tab\t", false},
		{"new\nline", false}, {"ünï", false}, {"x:y", false},
	} {
		err := ValidateName(c.name)
		if c.ok && err != nil {
			t.Errorf("ValidateName(%q): %v", c.name, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "\""+strings.ReplaceAll(strings.ReplaceAll(c.name, "\t", `\t`), "\n", `\n`))) {
			t.Errorf("ValidateName(%q) = %v, want an error naming it", c.name, err)
		}
	}
}

// TestFindRefs: "" is a prefix of every ID and must never match, not even
// the only container; ambiguous prefixes are refused, naming the ref.
func TestFindRefs(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	root := t.TempDir()
	mk := func(id, name string) {
		dir := filepath.Join(root, "containers", id)
		os.MkdirAll(dir, 0o700)
		if err := writeJSON(filepath.Join(dir, "config.json"), Container{ID: id, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	mk("abc111", "one")
	for _, c := range []struct {
		ref, want, errHas string
	}{
		{"", "", `""`},
		{"one", "abc111", ""},
		{"abc", "abc111", ""},
	} {
		got, err := Find(root, c.ref)
		if c.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("Find(%q) = %s, %v; want an error naming %s", c.ref, got.ID, err, c.errHas)
			}
		} else if err != nil || got.ID != c.want {
			t.Errorf("Find(%q) = %s, %v; want %s", c.ref, got.ID, err, c.want)
		}
	}
	mk("abc222", "two")
	for _, ref := range []string{"", "abc"} {
		if got, err := Find(root, ref); err == nil || !strings.Contains(err.Error(), `"`+ref+`"`) {
			t.Errorf("Find(%q) with two containers = %s, %v; want an error naming the ref", ref, got.ID, err)
		}
	}
}
