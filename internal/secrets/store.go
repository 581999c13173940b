package secrets

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// File names inside the state directory.
const (
	StateFile   = "secrets.json"
	RootKeyFile = "root.key"
	AuditFile   = "audit.log"
)

// KeyFile is a file the secrets service keeps at rest on purpose: key
// material or sealed data, mode 0600.
type KeyFile struct {
	// Name is the file's name in the service's directory.
	Name string
	// What it is, for a scanner that skips it.
	What string
}

// KeyFiles are the files a plaintext scan of the service's directory must
// skip: they hold keys or ciphertext by design, never a secret in the clear.
var KeyFiles = []KeyFile{
	{StateFile, "sealed secret store (AES-256-GCM)"},
	{RootKeyFile, "secrets root key (the local KMS key)"},
}

// maxVersions is how many versions a secret keeps; the oldest unlabelled ones go first.
const maxVersions = 100

type version struct {
	ID           string    `json:"id"`
	Stages       []string  `json:"stages"`
	Created      time.Time `json:"created"`
	LastAccessed time.Time `json:"lastAccessed,omitzero"`
	Sealed       sealed    `json:"sealed"`
}

type secret struct {
	ARN               string         `json:"arn"`
	Name              string         `json:"name"`
	Description       string         `json:"description,omitempty"`
	KmsKeyID          string         `json:"kmsKeyId,omitempty"`
	Created           time.Time      `json:"created"`
	LastChanged       time.Time      `json:"lastChanged"`
	LastAccessed      time.Time      `json:"lastAccessed,omitzero"`
	LastRotated       time.Time      `json:"lastRotated,omitzero"`
	RotationEnabled   bool           `json:"rotationEnabled,omitempty"`
	RotationLambdaARN string         `json:"rotationLambdaArn,omitempty"`
	RotationRules     *RotationRules `json:"rotationRules,omitempty"`
	Tags              []Tag          `json:"tags,omitempty"`
	Versions          []*version     `json:"versions"` // oldest first
}

type state struct {
	Format  int                `json:"format"`
	Secrets map[string]*secret `json:"secrets"` // by name
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// Dir is the state directory; created with mode 0700 if absent. Required.
	Dir string
	// Region is the region in ARNs. Required.
	Region string
	// Account is the account id in ARNs. Required.
	Account string
	// Clock is the time source. Default the wall clock.
	Clock clock.Clock
	// Failpoint injects failures in tests. Default none.
	Failpoint Failpoint
	// Logger receives events (never secret values). Default slog.Default().
	Logger *slog.Logger
}

// Store holds secrets encrypted at rest in one JSON state file, written atomically.
// It is safe for concurrent use.
type Store struct {
	cfg  StoreConfig
	log  *slog.Logger
	root []byte

	mu sync.Mutex
	st *state

	summary atomic.Pointer[[]SecretSummary] // published by publishSummary
}

// OpenStore loads (or creates) the root key and the state in cfg.Dir. Temp files
// left by an interrupted write are removed; the last complete state is used.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.Dir == "":
		return nil, errors.New("secrets.dir: required")
	case cfg.Region == "":
		return nil, errors.New("secrets.region: required")
	case cfg.Account == "":
		return nil, errors.New("secrets.account: required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	root, err := loadOrCreateRootKey(filepath.Join(cfg.Dir, RootKeyFile))
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "secrets"), root: root}
	path := filepath.Join(cfg.Dir, StateFile)
	if err := removeStaleTemps(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.st = &state{Format: 1, Secrets: map[string]*secret{}}
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	default:
		var st state
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("decode state %s: %w", path, err)
		}
		if st.Secrets == nil {
			st.Secrets = map[string]*secret{}
		}
		s.st = &st
	}
	s.publishSummary(s.st)
	return s, nil
}

// update applies fn to a copy of the state and persists it; the in-memory state
// changes only if the write succeeded.
func (s *Store) update(fn func(st *state) error) error {
	next, err := cloneState(s.st)
	if err != nil {
		return err
	}
	if err := fn(next); err != nil {
		return err
	}
	b, err := json.MarshalIndent(next, "", " ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(s.cfg.Dir, StateFile), b, 0o600, s.cfg.Failpoint); err != nil {
		return apiErr(CodeInternalError, "persist state: %v", err)
	}
	s.st = next
	s.publishSummary(next)
	return nil
}

func cloneState(st *state) (*state, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("copy state: %w", err)
	}
	var c state
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("copy state: %w", err)
	}
	if c.Secrets == nil {
		c.Secrets = map[string]*secret{}
	}
	return &c, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{1,512}$`)

const suffixAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (s *Store) newARN(name string) (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = suffixAlphabet[int(b[i])%len(suffixAlphabet)]
	}
	return fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", s.cfg.Region, s.cfg.Account, name, b), nil
}

// PartialARN is the ARN of a secret name without the random suffix; policies and
// authorization of not-yet-existing secrets use it.
func (s *Store) PartialARN(name string) string {
	return fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s", s.cfg.Region, s.cfg.Account, name)
}

func newUUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate version id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// find resolves a SecretId (name, full ARN or ARN without suffix) in st.
func find(st *state, id string) (*secret, error) {
	if id == "" {
		return nil, apiErr(CodeInvalidParameter, "You must provide a SecretId.")
	}
	if sec, ok := st.Secrets[id]; ok {
		return sec, nil
	}
	if strings.HasPrefix(id, "arn:") {
		for _, sec := range st.Secrets {
			if sec.ARN == id {
				return sec, nil
			}
		}
		if i := strings.Index(id, ":secret:"); i >= 0 {
			name := id[i+len(":secret:"):]
			if sec, ok := st.Secrets[name]; ok && strings.HasPrefix(sec.ARN, id) {
				return sec, nil
			}
		}
	}
	return nil, apiErr(CodeResourceNotFound, "Secrets Manager can't find the specified secret.")
}

// Resolve returns the ARN and name of a secret, for authorization and audit.
func (s *Store) Resolve(id string) (arn, name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, id)
	if err != nil {
		return "", "", err
	}
	return sec.ARN, sec.Name, nil
}

func (sec *secret) version(id string) *version {
	for _, v := range sec.Versions {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (sec *secret) staged(label string) *version {
	for _, v := range sec.Versions {
		if slices.Contains(v.Stages, label) {
			return v
		}
	}
	return nil
}

func (sec *secret) stagesMap(includeDeprecated bool) map[string][]string {
	m := map[string][]string{}
	for _, v := range sec.Versions {
		if len(v.Stages) > 0 || includeDeprecated {
			m[v.ID] = append([]string{}, v.Stages...)
		}
	}
	return m
}

// attachLabel moves label onto version vid, removing it from any other version.
// Moving AWSCURRENT labels the version that held it AWSPREVIOUS, as AWS does.
func attachLabel(sec *secret, label, vid string) {
	target := sec.version(vid)
	if target == nil {
		return
	}
	var oldCurrent *version
	if label == StageCurrent {
		if oc := sec.staged(StageCurrent); oc != nil && oc != target {
			oldCurrent = oc
		}
	}
	for _, v := range sec.Versions {
		if v != target {
			v.Stages = slices.DeleteFunc(v.Stages, func(l string) bool { return l == label })
		}
	}
	if oldCurrent != nil {
		for _, v := range sec.Versions {
			v.Stages = slices.DeleteFunc(v.Stages, func(l string) bool { return l == StagePrevious })
		}
		oldCurrent.Stages = append(oldCurrent.Stages, StagePrevious)
	}
	if !slices.Contains(target.Stages, label) {
		target.Stages = append(target.Stages, label)
	}
	if label == StageCurrent {
		// The current version is never also the previous one.
		target.Stages = slices.DeleteFunc(target.Stages, func(l string) bool { return l == StagePrevious })
	}
}

// prune drops the oldest unlabelled versions beyond maxVersions.
func prune(sec *secret) {
	for len(sec.Versions) > maxVersions {
		i := slices.IndexFunc(sec.Versions, func(v *version) bool { return len(v.Stages) == 0 })
		if i < 0 {
			return
		}
		sec.Versions = slices.Delete(sec.Versions, i, i+1)
	}
}

func validateValue(str *string, bin []byte, required bool) error {
	switch {
	case str != nil && bin != nil:
		return apiErr(CodeInvalidParameter, "You can't specify both a binary secret value and a string secret value in the same secret.")
	case str == nil && bin == nil && required:
		return apiErr(CodeInvalidParameter, "You must provide either SecretString or SecretBinary.")
	case str != nil && len(*str) > 65536, len(bin) > 65536:
		return apiErr(CodeInvalidParameter, "The secret value exceeds the maximum size of 65536 bytes.")
	}
	return nil
}

func validateToken(tok string) error {
	if tok != "" && (len(tok) < 32 || len(tok) > 64) {
		return apiErr(CodeInvalidParameter, "ClientRequestToken must be 32 to 64 characters long.")
	}
	return nil
}

func validateStage(label string) error {
	if label == "" || len(label) > 256 {
		return apiErr(CodeInvalidParameter, "Staging labels must be 1 to 256 characters long.")
	}
	return nil
}

func valueBytes(str *string, bin []byte) ([]byte, bool) {
	if str != nil {
		return []byte(*str), false
	}
	return bin, true
}

// sameValue reports whether a stored version holds the given value.
func (s *Store) sameValue(sec *secret, v *version, str *string, bin []byte) bool {
	plain, err := open(s.root, sec.ARN, v.ID, v.Sealed)
	if err != nil {
		return false
	}
	defer clear(plain)
	want, isBin := valueBytes(str, bin)
	return isBin == v.Sealed.Binary && string(plain) == string(want)
}

// CreateSecret creates a secret, with a first version labelled AWSCURRENT when a value is given.
func (s *Store) CreateSecret(in CreateSecretInput) (CreateSecretOutput, error) {
	arn, err := s.newARN(in.Name)
	if err != nil {
		return CreateSecretOutput{}, apiErr(CodeInternalError, "generate ARN: %v", err)
	}
	return s.createSecret(in, arn)
}

// createSecret creates the secret with a pre-generated ARN (authorized by the caller).
func (s *Store) createSecret(in CreateSecretInput, arn string) (CreateSecretOutput, error) {
	if !nameRE.MatchString(in.Name) {
		return CreateSecretOutput{}, apiErr(CodeInvalidParameter, "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!")
	}
	if err := validateValue(in.SecretString, in.SecretBinary, false); err != nil {
		return CreateSecretOutput{}, err
	}
	if err := validateToken(in.ClientRequestToken); err != nil {
		return CreateSecretOutput{}, err
	}
	hasValue := in.SecretString != nil || in.SecretBinary != nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec, ok := s.st.Secrets[in.Name]; ok {
		// Idempotent retry: same token and same value.
		if v := sec.version(in.ClientRequestToken); in.ClientRequestToken != "" && v != nil && hasValue && s.sameValue(sec, v, in.SecretString, in.SecretBinary) {
			return CreateSecretOutput{ARN: sec.ARN, Name: sec.Name, VersionId: v.ID}, nil
		}
		return CreateSecretOutput{}, apiErr(CodeResourceExists, "The operation failed because the secret %s already exists.", in.Name)
	}
	now := s.cfg.Clock.Now().UTC()
	out := CreateSecretOutput{ARN: arn, Name: in.Name}
	err := s.update(func(st *state) error {
		sec := &secret{ARN: arn, Name: in.Name, Description: in.Description, KmsKeyID: in.KmsKeyId, Created: now, LastChanged: now, Tags: in.Tags}
		if hasValue {
			vid := in.ClientRequestToken
			if vid == "" {
				var err error
				if vid, err = newUUID(); err != nil {
					return err
				}
			}
			val, bin := valueBytes(in.SecretString, in.SecretBinary)
			sl, err := seal(s.root, arn, vid, val, bin)
			if err != nil {
				return apiErr(CodeEncryptionFailure, "%v", err)
			}
			sec.Versions = []*version{{ID: vid, Stages: []string{StageCurrent}, Created: now, Sealed: sl}}
			out.VersionId = vid
		}
		st.Secrets[in.Name] = sec
		return nil
	})
	if err != nil {
		return CreateSecretOutput{}, err
	}
	s.log.Info("secret created", "arn", arn, "version", out.VersionId)
	return out, nil
}

// GetSecretValue decrypts one version (default AWSCURRENT).
func (s *Store) GetSecretValue(in GetSecretValueInput) (GetSecretValueOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, in.SecretId)
	if err != nil {
		return GetSecretValueOutput{}, err
	}
	var v *version
	switch {
	case in.VersionId != "":
		v = sec.version(in.VersionId)
		if v == nil {
			return GetSecretValueOutput{}, apiErr(CodeResourceNotFound, "Secrets Manager can't find the specified secret value for VersionId: %s", in.VersionId)
		}
		if in.VersionStage != "" && !slices.Contains(v.Stages, in.VersionStage) {
			return GetSecretValueOutput{}, apiErr(CodeInvalidRequest, "You provided a VersionStage that is not associated to the provided VersionId.")
		}
	default:
		stage := in.VersionStage
		if stage == "" {
			stage = StageCurrent
		}
		v = sec.staged(stage)
		if v == nil {
			return GetSecretValueOutput{}, apiErr(CodeResourceNotFound, "Secrets Manager can't find the specified secret value for staging label: %s", stage)
		}
	}
	plain, err := open(s.root, sec.ARN, v.ID, v.Sealed)
	if err != nil {
		s.log.Error("decrypt secret", "arn", sec.ARN, "version", v.ID, "err", err)
		return GetSecretValueOutput{}, apiErr(CodeDecryptionFailure, "Secrets Manager can't decrypt the protected secret text using the provided KMS key.")
	}
	out := GetSecretValueOutput{ARN: sec.ARN, Name: sec.Name, VersionId: v.ID, VersionStages: append([]string{}, v.Stages...), CreatedDate: epoch(v.Created)}
	if v.Sealed.Binary {
		out.SecretBinary = plain
	} else {
		str := string(plain)
		clear(plain)
		out.SecretString = &str
	}
	// LastAccessedDate has day granularity, as on AWS, so reads rarely write.
	today := s.cfg.Clock.Now().UTC().Truncate(24 * time.Hour)
	if !sec.LastAccessed.Equal(today) || !v.LastAccessed.Equal(today) {
		name, vid := sec.Name, v.ID
		if err := s.update(func(st *state) error {
			ns := st.Secrets[name]
			ns.LastAccessed = today
			ns.version(vid).LastAccessed = today
			return nil
		}); err != nil {
			s.log.Warn("record last access", "arn", sec.ARN, "err", err)
		}
	}
	return out, nil
}

// DescribeSecret returns a secret's metadata, never its value.
func (s *Store) DescribeSecret(in DescribeSecretInput) (DescribeSecretOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, in.SecretId)
	if err != nil {
		return DescribeSecretOutput{}, err
	}
	return DescribeSecretOutput{
		ARN: sec.ARN, Name: sec.Name, Description: sec.Description, KmsKeyId: sec.KmsKeyID,
		RotationEnabled: sec.RotationEnabled, RotationLambdaARN: sec.RotationLambdaARN, RotationRules: sec.RotationRules,
		LastRotatedDate: epoch(sec.LastRotated), LastChangedDate: epoch(sec.LastChanged), LastAccessedDate: epoch(sec.LastAccessed),
		NextRotationDate: epoch(nextRotation(sec)), Tags: sec.Tags, VersionIdsToStages: sec.stagesMap(false),
		CreatedDate: epoch(sec.Created), PrimaryRegion: s.cfg.Region,
	}, nil
}

// RotationInterval returns the interval of AutomaticallyAfterDays, or 0.
func RotationInterval(r *RotationRules) time.Duration {
	if r == nil || r.AutomaticallyAfterDays == nil || *r.AutomaticallyAfterDays <= 0 {
		return 0
	}
	return time.Duration(*r.AutomaticallyAfterDays) * 24 * time.Hour
}

func nextRotation(sec *secret) time.Time {
	iv := RotationInterval(sec.RotationRules)
	if !sec.RotationEnabled || iv == 0 {
		return time.Time{}
	}
	last := sec.LastRotated
	if last.IsZero() {
		last = sec.Created
	}
	return last.Add(iv)
}

// PutSecretValue stores a new version. It is idempotent on ClientRequestToken: the
// same token with the same value is a no-op, with a different value an error.
func (s *Store) PutSecretValue(in PutSecretValueInput) (PutSecretValueOutput, error) {
	if err := validateValue(in.SecretString, in.SecretBinary, true); err != nil {
		return PutSecretValueOutput{}, err
	}
	if err := validateToken(in.ClientRequestToken); err != nil {
		return PutSecretValueOutput{}, err
	}
	stages := in.VersionStages
	if stages == nil {
		stages = []string{StageCurrent}
	}
	if len(stages) > 20 {
		return PutSecretValueOutput{}, apiErr(CodeInvalidParameter, "A version can have at most 20 staging labels.")
	}
	for _, l := range stages {
		if err := validateStage(l); err != nil {
			return PutSecretValueOutput{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, in.SecretId)
	if err != nil {
		return PutSecretValueOutput{}, err
	}
	if v := sec.version(in.ClientRequestToken); in.ClientRequestToken != "" && v != nil {
		if s.sameValue(sec, v, in.SecretString, in.SecretBinary) {
			return PutSecretValueOutput{ARN: sec.ARN, Name: sec.Name, VersionId: v.ID, VersionStages: append([]string{}, v.Stages...)}, nil
		}
		return PutSecretValueOutput{}, apiErr(CodeResourceExists, "You can't modify an existing version, you can only create a new version.")
	}
	vid := in.ClientRequestToken
	if vid == "" {
		if vid, err = newUUID(); err != nil {
			return PutSecretValueOutput{}, apiErr(CodeInternalError, "%v", err)
		}
	}
	val, bin := valueBytes(in.SecretString, in.SecretBinary)
	sl, err := seal(s.root, sec.ARN, vid, val, bin)
	if err != nil {
		return PutSecretValueOutput{}, apiErr(CodeEncryptionFailure, "%v", err)
	}
	now := s.cfg.Clock.Now().UTC()
	name := sec.Name
	var out PutSecretValueOutput
	err = s.update(func(st *state) error {
		ns := st.Secrets[name]
		ns.Versions = append(ns.Versions, &version{ID: vid, Created: now, Sealed: sl})
		// With no current version yet, the first value becomes current.
		if ns.staged(StageCurrent) == nil && !slices.Contains(stages, StageCurrent) {
			stages = append(slices.Clone(stages), StageCurrent)
		}
		for _, l := range dedup(stages) {
			attachLabel(ns, l, vid)
		}
		ns.LastChanged = now
		prune(ns)
		out = PutSecretValueOutput{ARN: ns.ARN, Name: ns.Name, VersionId: vid, VersionStages: append([]string{}, ns.version(vid).Stages...)}
		return nil
	})
	if err != nil {
		return PutSecretValueOutput{}, err
	}
	s.log.Info("secret version added", "arn", out.ARN, "version", vid, "stages", out.VersionStages)
	return out, nil
}

func dedup(l []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range l {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// UpdateSecretVersionStage moves or removes a staging label.
func (s *Store) UpdateSecretVersionStage(in UpdateSecretVersionStageInput) (UpdateSecretVersionStageOutput, error) {
	if err := validateStage(in.VersionStage); err != nil {
		return UpdateSecretVersionStageOutput{}, err
	}
	if in.MoveToVersionId == "" && in.RemoveFromVersionId == "" {
		return UpdateSecretVersionStageOutput{}, apiErr(CodeInvalidParameter, "You must specify MoveToVersionId or RemoveFromVersionId.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, in.SecretId)
	if err != nil {
		return UpdateSecretVersionStageOutput{}, err
	}
	holder := sec.staged(in.VersionStage)
	if in.MoveToVersionId != "" && sec.version(in.MoveToVersionId) == nil {
		return UpdateSecretVersionStageOutput{}, apiErr(CodeResourceNotFound, "Secrets Manager can't find the specified secret version: %s", in.MoveToVersionId)
	}
	if in.RemoveFromVersionId != "" {
		if sec.version(in.RemoveFromVersionId) == nil {
			return UpdateSecretVersionStageOutput{}, apiErr(CodeResourceNotFound, "Secrets Manager can't find the specified secret version: %s", in.RemoveFromVersionId)
		}
		if holder == nil || holder.ID != in.RemoveFromVersionId {
			return UpdateSecretVersionStageOutput{}, apiErr(CodeInvalidParameter, "The staging label %s is not attached to version %s.", in.VersionStage, in.RemoveFromVersionId)
		}
	}
	if in.MoveToVersionId != "" && holder != nil && holder.ID != in.MoveToVersionId && in.RemoveFromVersionId != holder.ID {
		return UpdateSecretVersionStageOutput{}, apiErr(CodeInvalidParameter, "The staging label %s is currently attached to version %s, so you must explicitly reference that version in RemoveFromVersionId.", in.VersionStage, holder.ID)
	}
	if in.MoveToVersionId == "" && in.VersionStage == StageCurrent {
		return UpdateSecretVersionStageOutput{}, apiErr(CodeInvalidParameter, "You can only move staging label AWSCURRENT to a different secret version. It can't be completely removed.")
	}
	name := sec.Name
	now := s.cfg.Clock.Now().UTC()
	err = s.update(func(st *state) error {
		ns := st.Secrets[name]
		if in.MoveToVersionId != "" {
			attachLabel(ns, in.VersionStage, in.MoveToVersionId)
		} else {
			v := ns.version(in.RemoveFromVersionId)
			v.Stages = slices.DeleteFunc(v.Stages, func(l string) bool { return l == in.VersionStage })
		}
		ns.LastChanged = now
		return nil
	})
	if err != nil {
		return UpdateSecretVersionStageOutput{}, err
	}
	s.log.Info("staging label updated", "arn", sec.ARN, "stage", in.VersionStage, "to", in.MoveToVersionId, "from", in.RemoveFromVersionId)
	return UpdateSecretVersionStageOutput{ARN: sec.ARN, Name: sec.Name}, nil
}

func listLimit(max *int) (int, error) {
	if max == nil {
		return 100, nil
	}
	if *max < 1 || *max > 100 {
		return 0, apiErr(CodeInvalidParameter, "MaxResults must be between 1 and 100.")
	}
	return *max, nil
}

func parseNextToken(tok string, n int) (int, error) {
	if tok == "" {
		return 0, nil
	}
	off, err := strconv.Atoi(tok)
	if err != nil || off < 0 || off > n {
		return 0, apiErr(CodeInvalidNextToken, "The NextToken value is invalid.")
	}
	return off, nil
}

// ListSecrets lists secrets' metadata, sorted by name (or creation date), with paging.
func (s *Store) ListSecrets(in ListSecretsInput) (ListSecretsOutput, error) {
	limit, err := listLimit(in.MaxResults)
	if err != nil {
		return ListSecretsOutput{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*secret
	for _, sec := range s.st.Secrets {
		if matchFilters(sec, in.Filters) {
			all = append(all, sec)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if in.SortBy == "created-date" && !all[i].Created.Equal(all[j].Created) {
			return all[i].Created.Before(all[j].Created)
		}
		return all[i].Name < all[j].Name
	})
	if strings.EqualFold(in.SortOrder, "desc") {
		slices.Reverse(all)
	}
	off, err := parseNextToken(in.NextToken, len(all))
	if err != nil {
		return ListSecretsOutput{}, err
	}
	out := ListSecretsOutput{SecretList: []SecretListEntry{}}
	end := min(off+limit, len(all))
	for _, sec := range all[off:end] {
		out.SecretList = append(out.SecretList, SecretListEntry{
			ARN: sec.ARN, Name: sec.Name, Description: sec.Description, RotationEnabled: sec.RotationEnabled,
			RotationLambdaARN: sec.RotationLambdaARN, RotationRules: sec.RotationRules,
			LastRotatedDate: epoch(sec.LastRotated), LastChangedDate: epoch(sec.LastChanged), LastAccessedDate: epoch(sec.LastAccessed),
			NextRotationDate: epoch(nextRotation(sec)), Tags: sec.Tags, SecretVersionsToStages: sec.stagesMap(false), CreatedDate: epoch(sec.Created),
		})
	}
	if end < len(all) {
		out.NextToken = strconv.Itoa(end)
	}
	return out, nil
}

func matchFilters(sec *secret, filters []Filter) bool {
	for _, f := range filters {
		ok := false
		for _, v := range f.Values {
			neg := strings.HasPrefix(v, "!")
			v = strings.TrimPrefix(v, "!")
			var hit bool
			switch f.Key {
			case "name":
				hit = strings.HasPrefix(sec.Name, v)
			case "description":
				hit = strings.HasPrefix(sec.Description, v)
			case "tag-key":
				hit = slices.ContainsFunc(sec.Tags, func(t Tag) bool { return strings.HasPrefix(t.Key, v) })
			case "tag-value":
				hit = slices.ContainsFunc(sec.Tags, func(t Tag) bool { return strings.HasPrefix(t.Value, v) })
			case "all":
				hit = strings.HasPrefix(sec.Name, v) || strings.HasPrefix(sec.Description, v)
			}
			if hit != neg {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// ListSecretVersionIds lists the versions of a secret (deprecated ones on request).
func (s *Store) ListSecretVersionIds(in ListSecretVersionIdsInput) (ListSecretVersionIdsOutput, error) {
	limit, err := listLimit(in.MaxResults)
	if err != nil {
		return ListSecretVersionIdsOutput{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, in.SecretId)
	if err != nil {
		return ListSecretVersionIdsOutput{}, err
	}
	var vs []*version
	for _, v := range slices.Backward(sec.Versions) {
		if len(v.Stages) > 0 || in.IncludeDeprecated {
			vs = append(vs, v)
		}
	}
	off, err := parseNextToken(in.NextToken, len(vs))
	if err != nil {
		return ListSecretVersionIdsOutput{}, err
	}
	out := ListSecretVersionIdsOutput{ARN: sec.ARN, Name: sec.Name, Versions: []SecretVersionsListEntry{}}
	end := min(off+limit, len(vs))
	for _, v := range vs[off:end] {
		out.Versions = append(out.Versions, SecretVersionsListEntry{VersionId: v.ID, VersionStages: append([]string{}, v.Stages...), CreatedDate: epoch(v.Created), LastAccessedDate: epoch(v.LastAccessed)})
	}
	if end < len(vs) {
		out.NextToken = strconv.Itoa(end)
	}
	return out, nil
}
