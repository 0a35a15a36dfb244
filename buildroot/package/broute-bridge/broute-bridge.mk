################################################################################
#
# broute-bridge
#
################################################################################

# The bridge's Python code ships in python-libarms (one Python distribution);
# this package selects its runtime dependencies and installs the service files
# and the commented configuration from this repository's bridge/ (local
# source: nothing is downloaded, so there is no .hash file).
BROUTE_BRIDGE_VERSION = 0.1.0
BROUTE_BRIDGE_SITE = $(BR2_EXTERNAL_LIBARMS_PATH)/../bridge
BROUTE_BRIDGE_SITE_METHOD = local
BROUTE_BRIDGE_LICENSE = BSD-2-Clause
BROUTE_BRIDGE_DEPENDENCIES = python-libarms
BROUTE_BRIDGE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude __pycache__ --exclude '*.so' --exclude build

# The configuration holds the B-route password: root only. Files from a rootfs
# overlay replace these (overlays are copied after packages).
define BROUTE_BRIDGE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0600 $(@D)/broute-bridge.conf.sample \
		$(TARGET_DIR)/etc/broute-bridge.conf
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
