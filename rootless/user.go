package rootless

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// execUser is who the command runs as.
type execUser struct {
	uid, gid int
	groups   []int
	home     string
}

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

func readColon(path string, min int, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if parts := strings.Split(line, ":"); len(parts) >= min {
			fn(parts)
		}
	}
}

// resolveUser reads user[:group] against the container's /etc/passwd and
// /etc/group, as Docker does: a name must exist; a number need not, and
// then runs with group 0 and HOME=/. Supplementary groups come from
// /etc/group membership unless a group was given.
func resolveUser(spec string) (execUser, error) {
	u := execUser{uid: 0, gid: 0, home: "/root"}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		userPart = "0"
	}
	var pw *passwdEntry
	readColon("/etc/passwd", 7, func(p []string) {
		if pw != nil {
			return
		}
		uid, err1 := strconv.Atoi(p[2])
		gid, err2 := strconv.Atoi(p[3])
		if err1 != nil || err2 != nil {
			return
		}
		if p[0] == userPart || p[2] == userPart {
			pw = &passwdEntry{name: p[0], uid: uid, gid: gid, home: p[5]}
		}
	})
	if n, err := strconv.Atoi(userPart); err == nil {
		if n < 0 {
			return u, exitErr(125, "-u %s: negative user id", spec)
		}
		u.uid, u.home = n, "/"
		if pw != nil && pw.uid == n {
			u.gid, u.home = pw.gid, pw.home
		}
	} else {
		if pw == nil {
			return u, exitErr(125, "unable to find user %s: no matching entries in the image's /etc/passwd", userPart)
		}
		u.uid, u.gid, u.home = pw.uid, pw.gid, pw.home
	}
	if hasGroup {
		if n, err := strconv.Atoi(groupPart); err == nil {
			u.gid = n
		} else {
			found := false
			readColon("/etc/group", 3, func(p []string) {
				if !found && p[0] == groupPart {
					if gid, err := strconv.Atoi(p[2]); err == nil {
						u.gid, found = gid, true
					}
				}
			})
			if !found {
				return u, exitErr(125, "unable to find group %s: no matching entries in the image's /etc/group", groupPart)
			}
		}
		return u, nil
	}
	if pw != nil {
		// Like initgroups(3): the primary group, then memberships.
		u.groups = append(u.groups, u.gid)
		readColon("/etc/group", 4, func(p []string) {
			gid, err := strconv.Atoi(p[2])
			if err != nil || gid == u.gid {
				return
			}
			for _, m := range strings.Split(p[3], ",") {
				if m == pw.name {
					u.groups = append(u.groups, gid)
				}
			}
		})
	}
	return u, nil
}

func (u execUser) String() string { return fmt.Sprintf("%d:%d", u.uid, u.gid) }
