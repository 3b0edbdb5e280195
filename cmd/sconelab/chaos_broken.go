//go:build chaosbroken

package main

// The chaosbroken build tag makes a deliberately broken build for
// TestChaosCatchesBrokenBuild: the chaos servers skip sealing every tenth
// cart update. No other build sets it.
func init() { brokenReseal = true }
