package masters

import (
	"fmt"
	"io"
	"net/netip"
	"os"
)

// readMasterList reads master_list_file. A missing file is a failed read
// like any other: the config actor keeps the last masters until it is back.
func readMasterList(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("master_list_file: %w", err)
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("master_list_file %s: %w", path, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("master_list_file %s: larger than %d bytes", path, maxBody)
	}
	ips, err := ParseMasterList(body)
	if err != nil {
		return nil, fmt.Errorf("master_list_file %s: %w", path, err)
	}
	return ips, nil
}
