################################################################################
#
# broute-bridge
#
################################################################################

# The bridge's Python code ships in python-libarms (one Python distribution);
# this package selects its runtime dependencies and installs the service
# files. It has no source of its own, hence no .hash file.
BROUTE_BRIDGE_VERSION = 0.1.0
BROUTE_BRIDGE_LICENSE = BSD-2-Clause
BROUTE_BRIDGE_DEPENDENCIES = python-libarms

# Site-specific settings (serial port, upload URL) live in
# /etc/default/broute-bridge; keep a file already there from an overlay.
define BROUTE_BRIDGE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0644 $(BROUTE_BRIDGE_PKGDIR)/broute-bridge.default \
		$(TARGET_DIR)/etc/default/broute-bridge
	$(INSTALL) -d -m 0700 $(TARGET_DIR)/var/lib/broute-bridge
endef

define BROUTE_BRIDGE_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(BROUTE_BRIDGE_PKGDIR)/S81broute-bridge \
		$(TARGET_DIR)/etc/init.d/S81broute-bridge
endef

define BROUTE_BRIDGE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(BROUTE_BRIDGE_PKGDIR)/broute-bridge.service \
		$(TARGET_DIR)/usr/lib/systemd/system/broute-bridge.service
endef

$(eval $(generic-package))
