package drill

import (
	"time"

	"github.com/haven-platform/haven/internal/version"
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

// HavenVersion is the running haven's version (version.String: the one
// set at link time with -ldflags "-X
// github.com/haven-platform/haven/internal/version.Version=...", or
// "dev-<commit>" from the build's VCS stamp): the same string the daemon's
// status and `haven version` show.
func HavenVersion() string { return version.String() }
