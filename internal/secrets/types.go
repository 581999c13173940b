package secrets

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Staging labels with a meaning to Secrets Manager.
const (
	StageCurrent  = "AWSCURRENT"
	StagePending  = "AWSPENDING"
	StagePrevious = "AWSPREVIOUS"
)

// EpochTime is a timestamp encoded, as in AWS JSON 1.1, as epoch seconds (a float).
type EpochTime time.Time

// MarshalJSON encodes the time as epoch seconds with millisecond precision.
func (t EpochTime) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return []byte(strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)), nil
}

// UnmarshalJSON decodes epoch seconds.
func (t *EpochTime) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("decode timestamp: %w", err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
		return fmt.Errorf("decode timestamp: out of range")
	}
	sec, frac := math.Modf(f)
	*t = EpochTime(time.Unix(int64(sec), int64(frac*1e9)).UTC())
	return nil
}

func epoch(t time.Time) *EpochTime {
	if t.IsZero() {
		return nil
	}
	e := EpochTime(t)
	return &e
}

// Tag is a key/value tag on a secret.
type Tag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

// RotationRules is the rotation schedule of a secret.
type RotationRules struct {
	AutomaticallyAfterDays *int64  `json:"AutomaticallyAfterDays,omitempty"`
	Duration               *string `json:"Duration,omitempty"`
	ScheduleExpression     *string `json:"ScheduleExpression,omitempty"`
}

// CreateSecretInput is the CreateSecret request.
type CreateSecretInput struct {
	Name                        string
	ClientRequestToken          string
	Description                 string
	KmsKeyId                    string
	SecretString                *string
	SecretBinary                []byte
	Tags                        []Tag
	AddReplicaRegions           []json.RawMessage
	ForceOverwriteReplicaSecret bool
}

// CreateSecretOutput is the CreateSecret response.
type CreateSecretOutput struct {
	ARN       string
	Name      string
	VersionId string `json:",omitempty"`
}

// GetSecretValueInput is the GetSecretValue request.
type GetSecretValueInput struct {
	SecretId     string
	VersionId    string
	VersionStage string
}

// GetSecretValueOutput is the GetSecretValue response.
type GetSecretValueOutput struct {
	ARN           string
	Name          string
	VersionId     string
	SecretString  *string `json:",omitempty"`
	SecretBinary  []byte  `json:",omitempty"`
	VersionStages []string
	CreatedDate   *EpochTime `json:",omitempty"`
}

// DescribeSecretInput is the DescribeSecret request.
type DescribeSecretInput struct {
	SecretId string
}

// DescribeSecretOutput is the DescribeSecret response.
type DescribeSecretOutput struct {
	ARN                string
	Name               string
	Description        string              `json:",omitempty"`
	KmsKeyId           string              `json:",omitempty"`
	RotationEnabled    bool                `json:",omitempty"`
	RotationLambdaARN  string              `json:",omitempty"`
	RotationRules      *RotationRules      `json:",omitempty"`
	LastRotatedDate    *EpochTime          `json:",omitempty"`
	LastChangedDate    *EpochTime          `json:",omitempty"`
	LastAccessedDate   *EpochTime          `json:",omitempty"`
	NextRotationDate   *EpochTime          `json:",omitempty"`
	Tags               []Tag               `json:",omitempty"`
	VersionIdsToStages map[string][]string `json:",omitempty"`
	CreatedDate        *EpochTime          `json:",omitempty"`
	PrimaryRegion      string              `json:",omitempty"`
}

// PutSecretValueInput is the PutSecretValue request.
type PutSecretValueInput struct {
	SecretId           string
	ClientRequestToken string
	SecretString       *string
	SecretBinary       []byte
	VersionStages      []string
	RotationToken      string
}

// PutSecretValueOutput is the PutSecretValue response.
type PutSecretValueOutput struct {
	ARN           string
	Name          string
	VersionId     string
	VersionStages []string
}

// UpdateSecretVersionStageInput is the UpdateSecretVersionStage request.
type UpdateSecretVersionStageInput struct {
	SecretId            string
	VersionStage        string
	MoveToVersionId     string
	RemoveFromVersionId string
}

// UpdateSecretVersionStageOutput is the UpdateSecretVersionStage response.
type UpdateSecretVersionStageOutput struct {
	ARN  string
	Name string
}

// RotateSecretInput is the RotateSecret request.
type RotateSecretInput struct {
	SecretId           string
	ClientRequestToken string
	RotationLambdaARN  string
	RotationRules      *RotationRules
	RotateImmediately  *bool
}

// RotateSecretOutput is the RotateSecret response.
type RotateSecretOutput struct {
	ARN       string
	Name      string
	VersionId string `json:",omitempty"`
}

// Filter is a ListSecrets filter.
type Filter struct {
	Key    string
	Values []string
}

// ListSecretsInput is the ListSecrets request.
type ListSecretsInput struct {
	MaxResults             *int
	NextToken              string
	Filters                []Filter
	SortOrder              string
	SortBy                 string
	IncludePlannedDeletion bool
}

// SecretListEntry is one secret in a ListSecrets response.
type SecretListEntry struct {
	ARN                    string
	Name                   string
	Description            string              `json:",omitempty"`
	RotationEnabled        bool                `json:",omitempty"`
	RotationLambdaARN      string              `json:",omitempty"`
	RotationRules          *RotationRules      `json:",omitempty"`
	LastRotatedDate        *EpochTime          `json:",omitempty"`
	LastChangedDate        *EpochTime          `json:",omitempty"`
	LastAccessedDate       *EpochTime          `json:",omitempty"`
	NextRotationDate       *EpochTime          `json:",omitempty"`
	Tags                   []Tag               `json:",omitempty"`
	SecretVersionsToStages map[string][]string `json:",omitempty"`
	CreatedDate            *EpochTime          `json:",omitempty"`
}

// ListSecretsOutput is the ListSecrets response.
type ListSecretsOutput struct {
	SecretList []SecretListEntry
	NextToken  string `json:",omitempty"`
}

// ListSecretVersionIdsInput is the ListSecretVersionIds request.
type ListSecretVersionIdsInput struct {
	SecretId          string
	MaxResults        *int
	NextToken         string
	IncludeDeprecated bool
}

// SecretVersionsListEntry is one version in a ListSecretVersionIds response.
type SecretVersionsListEntry struct {
	VersionId        string
	VersionStages    []string   `json:",omitempty"`
	CreatedDate      *EpochTime `json:",omitempty"`
	LastAccessedDate *EpochTime `json:",omitempty"`
}

// ListSecretVersionIdsOutput is the ListSecretVersionIds response.
type ListSecretVersionIdsOutput struct {
	ARN       string
	Name      string
	Versions  []SecretVersionsListEntry
	NextToken string `json:",omitempty"`
}

// Error codes returned by the API, as in Secrets Manager.
const (
	CodeResourceNotFound   = "ResourceNotFoundException"
	CodeResourceExists     = "ResourceExistsException"
	CodeInvalidParameter   = "InvalidParameterException"
	CodeInvalidRequest     = "InvalidRequestException"
	CodeInvalidNextToken   = "InvalidNextTokenException"
	CodeDecryptionFailure  = "DecryptionFailure"
	CodeEncryptionFailure  = "EncryptionFailure"
	CodeInternalError      = "InternalServiceError"
	CodeAccessDenied       = "AccessDeniedException"
	CodeSerialization      = "SerializationException"
	CodeUnknownOperation   = "UnknownOperationException"
	CodeLimitExceeded      = "LimitExceededException"
	CodeValidationError    = "ValidationException"
	CodeMethodNotSupported = "MethodNotAllowedException"
)

// APIError is an error reported to the client as {"__type": Code, "message": Message}.
type APIError struct {
	Code    string
	Message string
	Status  int
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

func apiErr(code, format string, args ...any) *APIError {
	status := http.StatusBadRequest
	switch code {
	case CodeInternalError:
		status = http.StatusInternalServerError
	case CodeAccessDenied:
		status = http.StatusForbidden
	}
	return &APIError{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}
