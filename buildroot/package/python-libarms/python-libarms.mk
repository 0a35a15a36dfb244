################################################################################
#
# python-libarms
#
################################################################################

# Built from this repository (local source: nothing is downloaded, so there is
# no .hash file). The version follows setup.py.
PYTHON_LIBARMS_VERSION = 0.1.0
PYTHON_LIBARMS_SITE = $(BR2_EXTERNAL_LIBARMS_PATH)/..
PYTHON_LIBARMS_SITE_METHOD = local
PYTHON_LIBARMS_SETUP_TYPE = setuptools
PYTHON_LIBARMS_LICENSE = BSD-2-Clause
# setup.py builds libarms._core from csrc/ through cffi_modules: cffi runs on
# the host, the C code is compiled with the target toolchain and links the
# target's libcrypto.
PYTHON_LIBARMS_DEPENDENCIES = host-python-cffi openssl

# The site is the repository root: keep a developer's virtualenv, build and
# test products, and this tree itself out of the copy.
PYTHON_LIBARMS_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /.venv --exclude /build --exclude '/dist/*.whl' \
	--exclude '/dist/*.tar.gz' --exclude /buildroot \
	--exclude /tests --exclude /bench --exclude /state \
	--exclude '*.so' --exclude /libarms/_core.c --exclude '*.egg-info' \
	--exclude __pycache__ --exclude .pytest_cache --exclude .hypothesis

PYTHON_LIBARMS_SITE_PACKAGES = \
	$(TARGET_DIR)/usr/lib/python$(PYTHON3_VERSION_MAJOR)/site-packages

# The bridge and the test server ship in the same Python distribution: drop
# what the configuration does not ask for.
ifeq ($(BR2_PACKAGE_BROUTE_BRIDGE),)
define PYTHON_LIBARMS_REMOVE_BRIDGE
	rm -rf $(PYTHON_LIBARMS_SITE_PACKAGES)/bridge
	rm -f $(TARGET_DIR)/usr/bin/broute-bridge $(TARGET_DIR)/usr/bin/broute-sim
endef
PYTHON_LIBARMS_POST_INSTALL_TARGET_HOOKS += PYTHON_LIBARMS_REMOVE_BRIDGE
endif

ifeq ($(BR2_PACKAGE_PYTHON_LIBARMS_TESTSERVER),)
define PYTHON_LIBARMS_REMOVE_TESTSERVER
	rm -rf $(PYTHON_LIBARMS_SITE_PACKAGES)/libarms/testserver
	rm -f $(PYTHON_LIBARMS_SITE_PACKAGES)/libarms/demo.py \
		$(PYTHON_LIBARMS_SITE_PACKAGES)/libarms/demo.pyc \
		$(PYTHON_LIBARMS_SITE_PACKAGES)/libarms/__pycache__/demo.*
	rm -f $(TARGET_DIR)/usr/bin/arms-testserver $(TARGET_DIR)/usr/bin/arms-demo
endef
PYTHON_LIBARMS_POST_INSTALL_TARGET_HOOKS += PYTHON_LIBARMS_REMOVE_TESTSERVER
endif

ifeq ($(BR2_PACKAGE_PYTHON_LIBARMS_ARMSD),y)
# The config holds the LS-SA key: readable by root only. An existing file in a
# rootfs overlay wins because overlays are copied after packages.
define PYTHON_LIBARMS_INSTALL_ARMSD_CONFIG
	$(INSTALL) -D -m 0600 $(PYTHON_LIBARMS_PKGDIR)/armsd.conf \
		$(TARGET_DIR)/etc/armsd/armsd.conf
	$(INSTALL) -d -m 0700 $(TARGET_DIR)/var/lib/armsd
endef
PYTHON_LIBARMS_POST_INSTALL_TARGET_HOOKS += PYTHON_LIBARMS_INSTALL_ARMSD_CONFIG

define PYTHON_LIBARMS_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(PYTHON_LIBARMS_PKGDIR)/S80armsd \
		$(TARGET_DIR)/etc/init.d/S80armsd
endef

# The systemd unit is armsd's own (dist/armsd.service, checked by its tests).
define PYTHON_LIBARMS_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/dist/armsd.service \
		$(TARGET_DIR)/usr/lib/systemd/system/armsd.service
endef
endif

$(eval $(python-package))
