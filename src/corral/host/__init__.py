"""Every privileged call (ip, nft, tc, mount, losetup, lxc-*, cgroup writes) goes through here."""
