# SPDX-License-Identifier: GPL-2.0-or-later
#
# Front door: "make" builds, "make check" installs what is missing, builds
# a normal and a sanitizer tree and runs every test, "make bench" runs the
# benchmarks.  The real build is meson/ninja in $(BUILD_DIR).

BUILD_DIR ?= build
SAN_DIR ?= build-san
SRC_DIR := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))

.PHONY: all deps check check-unit check-slow check-san checkpatch bench \
	run clean distclean

all: $(BUILD_DIR)/build.ninja
	ninja -C $(BUILD_DIR)

deps:
	@$(SRC_DIR)scripts/install-deps

$(BUILD_DIR)/build.ninja:
	@$(SRC_DIR)scripts/install-deps
	$(SRC_DIR)configure --builddir=$(BUILD_DIR)

$(SAN_DIR)/build.ninja:
	@$(SRC_DIR)scripts/install-deps
	$(SRC_DIR)configure --builddir=$(SAN_DIR) --enable-debug \
		--enable-sanitizers

# Everything make check needs; it prints "N passed, N failed" last.
check: deps $(BUILD_DIR)/build.ninja $(SAN_DIR)/build.ninja
	ninja -C $(BUILD_DIR)
	ninja -C $(SAN_DIR)
	@$(SRC_DIR)scripts/run-checks --build $(BUILD_DIR) --san $(SAN_DIR)

check-slow: deps $(BUILD_DIR)/build.ninja $(SAN_DIR)/build.ninja
	ninja -C $(BUILD_DIR)
	ninja -C $(SAN_DIR)
	@$(SRC_DIR)scripts/run-checks --build $(BUILD_DIR) --san $(SAN_DIR) \
		--slow

check-unit: all
	meson test -C $(BUILD_DIR) --suite unit --print-errorlogs

check-san: $(SAN_DIR)/build.ninja
	ninja -C $(SAN_DIR)
	meson test -C $(SAN_DIR) --suite unit --print-errorlogs

checkpatch:
	@$(SRC_DIR)scripts/checkpatch

bench: all
	@$(SRC_DIR)scripts/run-bench $(BUILD_DIR)

# The main job on its embedded default configuration (see README).
run: all
	@$(SRC_DIR)scripts/run-default $(BUILD_DIR)

clean:
	-ninja -C $(BUILD_DIR) clean
	-ninja -C $(SAN_DIR) clean

distclean:
	rm -rf $(BUILD_DIR) $(SAN_DIR)
