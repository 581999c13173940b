package drill

import (
	"runtime/debug"
	"time"
)

// Envelope is what every drill report shares, the common shape issue 14
// keeps reports in: which drill, when, against which region and spec, by
// which haven, and the verdict. A drill's report embeds it, so its JSON
// starts with these keys; drills with a per-second record add a
// "timeline".
type Envelope struct {
	// Drill names the drill, e.g. "exam-spike".
	Drill     string    `json:"drill"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	// Region is the region's name.
	Region string `json:"region"`
	// SpecSHA256 is the SHA-256 of the spec file the daemon was started
	// from (hex), empty when it was not started from a file.
	SpecSHA256 string `json:"spec_sha256"`
	// HavenVersion identifies the haven build (HavenVersion()).
	HavenVersion string `json:"haven_version"`
	// Pass is the verdict; Reasons say why not.
	Pass    bool     `json:"pass"`
	Reasons []string `json:"reasons,omitempty"`
}

// version, when set at build time (go build -ldflags "-X
// github.com/haven-platform/haven/internal/drill.version=..."), names the
// build.
var version string

// HavenVersion is the running haven's version: the one set at build time,
// the module version, or the VCS revision it was built from (with "+dirty"
// for uncommitted changes), or "devel".
func HavenVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
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
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}
