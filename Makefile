# SPDX-License-Identifier: Apache-2.0
# pvrepl — one GNU Makefile, no configure. `make V=1` shows the commands.
#   make            build/pvrepl, build/libkfio.a, build/test-tool
#   make deps       install the Debian packages the project needs (idempotent)
#   make demo       deps + build + run the demo on the built-in default
#   make test       build and run every test (unit + integration)
#   make check      the tests under ASan + UBSan (build-asan/)
#   make fuzz       every tests/fuzz/fuzz_*.c under libFuzzer + ASan + UBSan (clang,
#                   build-fuzz/), FUZZ_SECONDS each (default 60); fails on a crash.
#                   Not part of `make test`.
#   make bench      the benchmark harness (results under bench/results/)
#   make format-check

BUILD ?= build
CC ?= cc
WERROR ?= 1
PKGS := liburing libbpf libxxhash liblz4 jansson openssl libmicrohttpd libnl-3.0 libnl-route-3.0 inih
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
	-Wformat=2 -fno-common
ifeq ($(WERROR),1)
WARN += -Werror
endif
OPT ?= -O2 -g
CFLAGS_BASE := -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -Iinclude -MMD -MP
# The engine sees only its own headers and liburing (layering: it cannot include
# anything from replicator/).
CFLAGS_KFIO := $(CFLAGS_BASE) -Ikmod-free-io -Ikmod-free-io/bpf -I$(BUILD)/kmod-free-io/bpf \
	$(shell pkg-config --cflags liburing libbpf 2>/dev/null) \
	$(EXTRA_CFLAGS) $(CFLAGS)
CFLAGS_ALL := $(CFLAGS_BASE) -Ireplicator -Itests/lib $(PKG_CFLAGS) $(EXTRA_CFLAGS) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lpthread -lm $(EXTRA_LDFLAGS) $(LDFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

KFIO_SRC := $(wildcard kmod-free-io/*.c)
REPL_SRC := $(filter-out replicator/main.c,$(wildcard replicator/*.c))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
TESTLIB_SRC := $(wildcard tests/lib/*.c)

KFIO_OBJ := $(KFIO_SRC:%.c=$(BUILD)/%.o)
REPL_OBJ := $(REPL_SRC:%.c=$(BUILD)/%.o)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)

.PHONY: all deps demo test check fuzz fuzz-build bench format format-check clean
# Keep objects of test binaries (no `rm` after the test summary).
.SECONDARY:
all: $(BUILD)/pvrepl $(BUILD)/libkfio.a $(BUILD)/test-tool $(BUILD)/kfio-bench

# The write tracker's BPF program: compiled by clang for the BPF target (CO-RE,
# against the hand-written types of bpf/track_types.h, not a generated
# vmlinux.h), then embedded in a libbpf skeleton that bpftool generates; both
# are build products under $(BUILD)/kmod-free-io/bpf, never committed.
BPF_CLANG ?= clang
BPFTOOL ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
BPF_ARCH_INC := -I/usr/include/$(shell $(CC) -print-multiarch 2>/dev/null)
$(BUILD)/kmod-free-io/bpf/track.bpf.o: kmod-free-io/bpf/track.bpf.c kmod-free-io/bpf/track_types.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  BPF     $<")
	$(Q)$(BPF_CLANG) -O2 -g -target bpf -mcpu=v3 -Wall -Werror $(BPF_ARCH_INC) \
		-Ikmod-free-io/bpf -c -o $@ $<

$(BUILD)/kmod-free-io/bpf/track.skel.h: $(BUILD)/kmod-free-io/bpf/track.bpf.o
	@$(if $(Q),echo "  SKEL    $@")
	$(Q)$(BPFTOOL) gen skeleton $< name track_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/kmod-free-io/track.o: $(BUILD)/kmod-free-io/bpf/track.skel.h

$(BUILD)/kmod-free-io/%.o: kmod-free-io/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_KFIO) -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/libkfio.a: $(KFIO_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libpvrepl.a: $(REPL_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/pvrepl: $(BUILD)/replicator/main.o $(BUILD)/libpvrepl.a $(BUILD)/libkfio.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/test-tool: $(BUILD)/tests/tool/test-tool.o $(BUILD)/libpvrepl.a $(BUILD)/libkfio.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/kfio-bench: $(BUILD)/bench/kfio-bench.o $(BUILD)/libkfio.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJ) $(BUILD)/libpvrepl.a $(BUILD)/libkfio.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcmocka

# libFuzzer supplies main(); corpus-gen has its own and links without it.
$(BUILD)/tests/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/libpvrepl.a $(BUILD)/libkfio.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/fuzz/corpus-gen: $(BUILD)/tests/fuzz/corpus-gen.o $(BUILD)/libpvrepl.a \
		$(BUILD)/libkfio.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

deps:
	$(Q)bash tools/deps.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)./$(BUILD)/pvrepl demo

SUITE ?= all
test: all $(UNIT_BIN)
	$(Q)BUILD=$(BUILD) SUITE=$(SUITE) bash tests/run.sh

check:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan \
		OPT="-O1 -g -fno-omit-frame-pointer" \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" SUITE=fault test

# make fuzz FUZZ_SECONDS=10: the library and the targets are built again by clang
# with coverage for libFuzzer (fuzzer-no-link) and ASan + UBSan, under build-fuzz/;
# a target links only the objects of libpvrepl.a it needs. tests/fuzz/run.sh
# writes the seeds (corpus-gen) and runs each target in turn. clang, unlike gcc,
# warns of a va_list format in a function without a format attribute
# (config.c's config_vproblem): that one warning is off here.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
fuzz:
	$(Q)command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs $(FUZZ_CC): make deps" >&2; exit 1; }
	$(Q)$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) \
		OPT="-O1 -g -fno-omit-frame-pointer" \
		EXTRA_CFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer-no-link -Wno-format-nonliteral" \
		EXTRA_LDFLAGS="$(FUZZ_SAN)" fuzz-build
	$(Q)BUILD=build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh \
		$(FUZZ_SRC:tests/fuzz/%.c=%)

fuzz-build: $(FUZZ_BIN) $(BUILD)/tests/fuzz/corpus-gen

# make bench QUICK=1 (smaller, faster) SCENARIOS="engine 22-mapmem" (names or
# parts of names, space- or comma-separated); RUNS, RESULTS_DIR and BENCH_WORK
# reach bench/run.sh from the command line or the environment too.
bench: all
	$(Q)BUILD=$(BUILD) QUICK="$(QUICK)" SCENARIOS="$(SCENARIOS)" bash bench/run.sh

FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	$(Q)clang-format -i $(FORMAT_SRC)
format-check:
	$(Q)clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
