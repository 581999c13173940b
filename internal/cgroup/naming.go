package cgroup

import (
	"crypto/sha256"
	"encoding/hex"
)

// stateDirTag names what belongs to one state dir outside it.
func stateDirTag(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	return hex.EncodeToString(sum[:4])
}

// RegionRoot is the cgroup root of region name run from stateDir: named for
// both, so two regions never share one.
func RegionRoot(name, stateDir string) string { return "haven-" + name + "-" + stateDirTag(stateDir) }

// RegionPattern matches the cgroup root of stateDir's region, whatever its name.
func RegionPattern(stateDir string) string { return "haven-*-" + stateDirTag(stateDir) }
