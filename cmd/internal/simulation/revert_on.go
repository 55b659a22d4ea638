//go:build negativecontrol

package simulation

import (
	"os"
	"slices"
	"strings"
)

var revertW8 = slices.Contains(strings.Split(os.Getenv("KOMMODITY_REVERT"), ","), "w8")
