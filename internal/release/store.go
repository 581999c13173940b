package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
)

// Template is what a version runs: the launch template's fields a deploy
// may change. The port and the instance size stay the spec's.
type Template struct {
	// Command is the program and its arguments (${HOST}, ${PORT},
	// ${INSTANCE_ID}, ${ZONE} expanded at launch; ${ARTIFACT} at deploy).
	Command []string `json:"command"`
	// Env holds the version's own environment variables, over the region's.
	Env map[string]string `json:"env,omitempty"`
	// Artifact is the app build the version runs, if one was given.
	Artifact *Artifact `json:"artifact,omitempty"`
}

// Artifact is an app build copied into the release store.
type Artifact struct {
	// Source is the path it was deployed from.
	Source string `json:"source"`
	// Path is its copy in the store: <dir>/artifacts/<sha256>.
	Path string `json:"path"`
	// SHA256 is the hex digest of its content.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Version is one immutable launch template version.
type Version struct {
	// ID is "v1", "v2", ... in order of creation.
	ID string `json:"id"`
	// Hash is "sha256:<hex>" of the template's canonical JSON, the
	// artifact by its digest: equal hashes run the same thing.
	Hash string `json:"hash"`
	Template
	CreatedAt time.Time `json:"created_at"`
	// Origin says where it came from: "spec" or "deploy".
	Origin string `json:"origin"`
}

// HashTemplate returns a template's content hash.
func HashTemplate(t Template) string {
	c := struct {
		Command  []string          `json:"command"`
		Env      map[string]string `json:"env"`
		Artifact string            `json:"artifact"`
	}{Command: t.Command, Env: t.Env}
	if c.Env == nil {
		c.Env = map[string]string{}
	}
	if t.Artifact != nil {
		c.Artifact = t.Artifact.SHA256
		// The command names the artifact by its store path; the digest
		// stands for it, so two copies of one build hash the same.
		c.Command = slices.Clone(t.Command)
		for i, a := range c.Command {
			c.Command[i] = strings.ReplaceAll(a, t.Artifact.Path, "${ARTIFACT}")
		}
	}
	b, _ := json.Marshal(c) // map keys are sorted: canonical
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// state is the store's one file.
type state struct {
	Versions []Version `json:"versions"`
	Rollouts []Rollout `json:"rollouts"`
	// Current is the version the fleet's capacity launches run: the last
	// that succeeded or was rolled back to.
	Current string `json:"current"`
}

// Store keeps versions, rollouts and the current version in
// <dir>/releases.json (replaced atomically) and artifacts in
// <dir>/artifacts. Not safe for concurrent use: the Controller serialises.
type Store struct {
	dir string
	st  state
}

// OpenStore reads the store in dir, creating dir when missing.
func OpenStore(dir string) (*Store, error) {
	// 0711: instances (another uid) must reach artifacts by path, never list them.
	for _, d := range []string{dir, filepath.Join(dir, "artifacts")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("open release store: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("open release store: %w", err)
		}
	}
	s := &Store{dir: dir}
	b, err := os.ReadFile(s.file())
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("open release store: %w", err)
	}
	if err := json.Unmarshal(b, &s.st); err != nil {
		return nil, fmt.Errorf("open release store %s: %w; it is haven's own record of versions and rollouts, move it aside to start afresh", s.file(), err)
	}
	return s, nil
}

func (s *Store) file() string { return filepath.Join(s.dir, "releases.json") }

func (s *Store) save() error {
	b, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.file(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save release store: %w", err)
	}
	return nil
}

// Version returns version id.
func (s *Store) Version(id string) (Version, bool) {
	i := slices.IndexFunc(s.st.Versions, func(v Version) bool { return v.ID == id })
	if i < 0 {
		return Version{}, false
	}
	return s.st.Versions[i], true
}

// Versions lists every version, oldest first.
func (s *Store) Versions() []Version { return slices.Clone(s.st.Versions) }

// Current returns the current version (false before the first).
func (s *Store) Current() (Version, bool) { return s.Version(s.st.Current) }

// SetCurrent records id as current.
func (s *Store) SetCurrent(id string) error {
	s.st.Current = id
	return s.save()
}

// Rollouts lists every rollout, oldest first.
func (s *Store) Rollouts() []Rollout { return slices.Clone(s.st.Rollouts) }

// PutRollout records r, replacing the rollout of the same ID.
func (s *Store) PutRollout(r Rollout) error {
	r.Launched = slices.Clone(r.Launched)
	if i := slices.IndexFunc(s.st.Rollouts, func(x Rollout) bool { return x.ID == r.ID }); i >= 0 {
		s.st.Rollouts[i] = r
	} else {
		s.st.Rollouts = append(s.st.Rollouts, r)
	}
	return s.save()
}

// NextRolloutID returns the ID of the next rollout.
func (s *Store) NextRolloutID() string { return fmt.Sprintf("r-%04d", len(s.st.Rollouts)+1) }

// Add records a new version of t: its artifact (a file path, if any) is
// copied into the store first, and "${ARTIFACT}" in the command becomes
// the copy's path. A template equal to an existing version's returns that
// version (versions are immutable; the same content is the same version).
func (s *Store) Add(t Template, artifactPath, origin string, now time.Time) (Version, bool, error) {
	t.Command = slices.Clone(t.Command)
	t.Env = maps.Clone(t.Env)
	if artifactPath != "" {
		a, err := s.copyArtifact(artifactPath)
		if err != nil {
			return Version{}, false, err
		}
		t.Artifact = &a
	}
	if t.Artifact != nil {
		for i, c := range t.Command {
			t.Command[i] = strings.ReplaceAll(c, "${ARTIFACT}", t.Artifact.Path)
		}
	}
	if len(t.Command) == 0 || t.Command[0] == "" {
		return Version{}, false, errors.New("add version: the command is empty: give --command, or an --artifact to run in place of the current program")
	}
	h := HashTemplate(t)
	for _, v := range s.st.Versions {
		if v.Hash == h {
			return v, false, nil
		}
	}
	v := Version{ID: fmt.Sprintf("v%d", len(s.st.Versions)+1), Hash: h, Template: t, CreatedAt: now.UTC(), Origin: origin}
	s.st.Versions = append(s.st.Versions, v)
	if err := s.save(); err != nil {
		s.st.Versions = s.st.Versions[:len(s.st.Versions)-1]
		return Version{}, false, err
	}
	return v, true, nil
}

// copyArtifact copies the file at path into <dir>/artifacts/<sha256>,
// readable and runnable by any uid (0555) but not listable.
func (s *Store) copyArtifact(path string) (Artifact, error) {
	src, err := os.Open(path)
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact %s: %w; build it first, or give the path of an existing file", path, errors.Unwrap(err))
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return Artifact{}, fmt.Errorf("artifact %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "artifacts"), ".incoming-*")
	if err != nil {
		return Artifact{}, fmt.Errorf("copy artifact %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	hsh := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, hsh), src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("copy artifact %s: %w", path, err)
	}
	sum := hex.EncodeToString(hsh.Sum(nil))
	dst := filepath.Join(s.dir, "artifacts", sum)
	if err := os.Chmod(tmp.Name(), 0o555); err != nil {
		return Artifact{}, fmt.Errorf("copy artifact %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return Artifact{}, fmt.Errorf("copy artifact %s: %w", path, err)
	}
	abs, _ := filepath.Abs(path)
	return Artifact{Source: abs, Path: dst, SHA256: sum, Size: n}, nil
}
