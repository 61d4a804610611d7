"""Networks shared by containers and VMs: model, IPAM, nftables and tc rendering (pure), and
the realiser that applies them through ``corral.host.net*``."""
