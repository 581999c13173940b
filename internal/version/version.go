// Package version is the haven build's version string, set at link time or read from the build's VCS stamp.
package version

import (
	"runtime/debug"
	"sync"
)

// Version is set at link time: go build -ldflags "-X
// github.com/haven-platform/haven/internal/version.Version=v1.2.3". Default
// "": String then derives one from the build's VCS stamp.
var Version string

var derived = sync.OnceValue(func() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
})

// String returns the version of this build: Version when set at link time,
// otherwise "dev-<commit>" from the VCS stamp ("-dirty" when the tree had
// changes), or "dev" when there is none.
func String() string { return derived() }
