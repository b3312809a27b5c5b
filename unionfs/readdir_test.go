package unionfs

import (
	"context"
	"fmt"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func listing(names ...string) []fuse.DirEntry {
	var out []fuse.DirEntry
	for _, n := range names {
		out = append(out, fuse.DirEntry{Name: n})
	}
	listingCookies(out)
	return out
}

// A reader that resumes from its last offset in a listing made afresh
// after entries came and went (as each zero-message READDIR does) sees
// every entry that was there all along exactly once.
func TestListingOffsetsSurviveChanges(t *testing.T) {
	var before, after []string
	for i := 0; i < 200; i++ {
		before = append(before, fmt.Sprintf("f%d", i))
		if i%7 != 0 { // removed meanwhile
			after = append(after, fmt.Sprintf("f%d", i))
		}
	}
	for i := 0; i < 50; i++ {
		after = append(after, fmt.Sprintf("new%d", i))
	}
	ctx := context.Background()
	for cut := 0; cut <= len(before); cut += 13 {
		seen := map[string]int{}
		d := &dirHandle{entries: listing(before...)}
		var last uint64
		for i := 0; i < cut; i++ {
			e, _ := d.Readdirent(ctx)
			seen[e.Name]++
			last = e.Off
		}
		d = &dirHandle{entries: listing(after...)}
		if cut > 0 {
			d.Seekdir(ctx, last)
		}
		for {
			e, _ := d.Readdirent(ctx)
			if e == nil {
				break
			}
			seen[e.Name]++
		}
		for i := 0; i < 200; i++ {
			name := fmt.Sprintf("f%d", i)
			if i%7 != 0 && seen[name] != 1 {
				t.Fatalf("cut %d: %s seen %d times", cut, name, seen[name])
			}
		}
		for name, n := range seen {
			if n != 1 {
				t.Fatalf("cut %d: %s seen %d times", cut, name, n)
			}
		}
	}
}

func TestListingCookiesOrderedAndPositive(t *testing.T) {
	l := listing("a", "b", "c", "", "x/y")
	for i, e := range l {
		if e.Off == 0 || int64(e.Off) < 0 {
			t.Fatalf("bad cookie %d for %q", e.Off, e.Name)
		}
		if i > 0 && e.Off <= l[i-1].Off {
			t.Fatalf("cookies not increasing: %v", l)
		}
	}
}
