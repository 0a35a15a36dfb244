include $(sort $(wildcard $(BR2_EXTERNAL_LIBARMS_PATH)/package/*/*.mk))
