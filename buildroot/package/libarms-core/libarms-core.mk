################################################################################
#
# libarms-core
#
################################################################################

# Built from this repository's csrc/ (local source: nothing is downloaded, so
# there is no .hash file). The version follows setup.py.
LIBARMS_CORE_VERSION = 0.1.0
LIBARMS_CORE_SITE = $(BR2_EXTERNAL_LIBARMS_PATH)/../csrc
LIBARMS_CORE_SITE_METHOD = local
LIBARMS_CORE_LICENSE = BSD-2-Clause
LIBARMS_CORE_DEPENDENCIES = openssl
# A static library and headers for C firmware: nothing goes to the target.
LIBARMS_CORE_INSTALL_STAGING = YES
LIBARMS_CORE_INSTALL_TARGET = NO
# A developer checkout may hold host objects and test binaries: never let
# them into the cross build.
LIBARMS_CORE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude '*.o' --exclude '*.a' --exclude '*.so' --exclude build

# csrc/Makefile: `make lib OUT=dir` builds dir/libarmscore.a and copies the
# public headers to dir/include/. CC, AR and CFLAGS given on the command line
# (TARGET_CONFIGURE_OPTS) override the Makefile's.
define LIBARMS_CORE_BUILD_CMDS
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D) $(TARGET_CONFIGURE_OPTS) \
		OUT=$(@D)/out lib
endef

define LIBARMS_CORE_INSTALL_STAGING_CMDS
	$(INSTALL) -D -m 0644 $(@D)/out/libarmscore.a \
		$(STAGING_DIR)/usr/lib/libarmscore.a
	$(INSTALL) -d -m 0755 $(STAGING_DIR)/usr/include/armscore
	$(INSTALL) -m 0644 $(@D)/out/include/*.h \
		$(STAGING_DIR)/usr/include/armscore/
endef

$(eval $(generic-package))
