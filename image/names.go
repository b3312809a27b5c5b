package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// NormalizeName turns a user's image name into the form the store keeps:
// "registry/repository:tag" or "registry/repository@digest". Names pulled
// from Docker Hub become "docker.io/library/alpine:latest"; names with no
// registry that did not come from one (import, commit, tag, load) get
// "localhost/", as podman does, so they can never shadow a registry image.
func NormalizeName(ref string, local bool) (string, error) {
	if local && !hasRegistry(ref) {
		ref = "localhost/" + ref
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", ref, err)
	}
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	base := reg + "/" + r.Context().RepositoryStr()
	switch t := r.(type) {
	case name.Tag:
		return base + ":" + t.TagStr(), nil
	case name.Digest:
		return base + "@" + t.DigestStr(), nil
	}
	return "", fmt.Errorf("image name %q: neither tag nor digest", ref)
}

// hasRegistry reports whether the first path element of ref names a
// registry host, by Docker's rule: it has a '.' or ':' or is localhost.
func hasRegistry(ref string) bool {
	first, _, found := strings.Cut(ref, "/")
	if !found {
		return false
	}
	return strings.ContainsAny(first, ".:") || first == "localhost"
}

// candidateNames lists the stored names ref may mean, most specific first.
func candidateNames(ref string) []string {
	out := []string{ref}
	if n, err := NormalizeName(ref, true); err == nil {
		out = append(out, n)
	}
	if n, err := NormalizeName(ref, false); err == nil {
		out = append(out, n)
	}
	return out
}
