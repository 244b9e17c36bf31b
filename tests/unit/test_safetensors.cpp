// safetensors reading, writing and validation; fp16/bf16 conversion against hand-computed bits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "checkpoints/hf_import.h"
#include "checkpoints/safetensors.h"
#include "tests/unit/scratch_dir.h"
#include "trainer/core/error.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// 8-byte little-endian length, then the header text, then `data`.
std::string safetensors_bytes(const std::string& header, const std::string& data, uint64_t claimed_len) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &claimed_len, 8);
  return out + header + data;
}
std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  return safetensors_bytes(header, data, header.size());
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text) << "\nexpected: " << (part)

float float_of(uint32_t bits) { return std::bit_cast<float>(bits); }

TEST(DType, NamesSizesAndParsing) {
  const std::vector<std::tuple<DType, const char*, size_t>> all = {
      {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
      {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
      {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1}};
  for (const auto& [dtype, name, size] : all) {
    EXPECT_STREQ(dtype_name(dtype), name);
    EXPECT_EQ(dtype_size(dtype), size);
    EXPECT_EQ(parse_dtype(name, "ctx"), dtype);
  }
  const std::string msg = error_of([] { parse_dtype("F8_E4M3", "model.safetensors: tensor 'w'"); });
  EXPECT_CONTAINS(msg, "model.safetensors: tensor 'w': unknown dtype 'F8_E4M3'");
}

TEST(Safetensors, RoundTripSeveralDtypesAndShapes) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x7F80, 0x0001};
  const std::vector<int64_t> i64 = {-1, INT64_MAX, INT64_MIN, 42};
  const std::vector<int32_t> i32 = {7, -7, 0};
  const std::vector<int16_t> i16 = {-300, 300};
  const std::vector<int8_t> i8 = {-128};
  const std::vector<uint8_t> u8 = {0, 255, 17};
  const std::vector<uint8_t> boolean = {1, 0};
  const double scalar = 3.141592653589793;
  const std::vector<TensorView> views = {
      {"model.f32", DType::F32, {2, 3}, f32.data()},
      {"model.bf16", DType::BF16, {4}, bf16.data()},
      {"model.i64", DType::I64, {2, 2}, i64.data()},
      {"model.i32", DType::I32, {3, 1}, i32.data()},
      {"model.i16", DType::I16, {2}, i16.data()},
      {"model.i8", DType::I8, {1, 1, 1}, i8.data()},
      {"model.u8", DType::U8, {3}, u8.data()},
      {"model.bool", DType::BOOL, {2}, boolean.data()},
      {"scalar", DType::F64, {}, &scalar},               // 0-d: one element
      {"empty", DType::F16, {0, 5}, nullptr},             // no elements, no data
  };
  const fs::path path = dir / "model.safetensors";
  write_safetensors(path.string(), views, {{"format", "pt"}, {"note", "round trip"}});
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path(), path);  // no temporary file left

  SafetensorsReader reader(path.string());
  EXPECT_EQ(reader.path(), path.string());
  EXPECT_EQ(reader.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}}));
  ASSERT_EQ(reader.tensors().size(), views.size());
  uint64_t total = 0;
  for (const auto& v : views) {
    const TensorInfo* info = reader.find(v.name);
    ASSERT_NE(info, nullptr) << v.name;
    EXPECT_EQ(info->dtype, v.dtype) << v.name;
    EXPECT_EQ(info->shape, v.shape) << v.name;
    int64_t numel = 1;
    for (int64_t d : v.shape) numel *= d;
    EXPECT_EQ(info->numel(), numel) << v.name;
    const uint64_t bytes = static_cast<uint64_t>(numel) * dtype_size(v.dtype);
    EXPECT_EQ(info->end - info->begin, bytes) << v.name;
    if (bytes) {
      EXPECT_EQ(std::memcmp(reader.data(*info), v.data, bytes), 0) << v.name;
    }
    total += bytes;
  }
  EXPECT_EQ(reader.find("absent"), nullptr);
  EXPECT_EQ(reader.find("scalar")->numel(), 1);
  EXPECT_EQ(reader.find("empty")->numel(), 0);

  // Layout: header padded with spaces to a multiple of 8, data packed right after it.
  const std::string file = read_bytes(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(file.size(), 8 + header_len + total);
}

// Byte-exact against files written by the reference implementation (safetensors 0.8.0, numpy
// save(): tensors sorted by alignment then name, so the orders below match ours).
TEST(Safetensors, MatchesReferenceBytes) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const float a[] = {1.0f, 2.0f};
  write_safetensors((dir / "a.safetensors").string(), {{"a", DType::F32, {2}, a}});
  EXPECT_EQ(read_bytes(dir / "a.safetensors"),
            std::string("8\0\0\0\0\0\0\0", 8) + R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})" +
                std::string("  \0\0\x80?\0\0\0@", 10));

  const int32_t w[] = {1, 2, 3, 4};
  write_safetensors((dir / "b.safetensors").string(),
                    {{"w", DType::I32, {2, 2}, w}, {"b", DType::F16, {0, 3}, nullptr}}, {{"format", "pt"}});
  std::string expected = std::string("\x98\0\0\0\0\0\0\0", 8) +
                         R"({"__metadata__":{"format":"pt"},"w":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]},)"
                         R"("b":{"dtype":"F16","shape":[0,3],"data_offsets":[16,16]}})" + std::string(7, ' ');
  expected.append(reinterpret_cast<const char*>(w), sizeof(w));
  EXPECT_EQ(read_bytes(dir / "b.safetensors"), expected);
}

TEST(Safetensors, ReaderIsMovable) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const float x[] = {4.0f, 5.0f};
  write_safetensors((dir / "m.safetensors").string(), {{"x", DType::F32, {2}, x}});
  SafetensorsReader first((dir / "m.safetensors").string());
  SafetensorsReader second(std::move(first));
  const TensorInfo* info = second.find("x");
  ASSERT_NE(info, nullptr);
  float back[2];
  convert_to_f32(info->dtype, second.data(*info), back, 2);
  EXPECT_EQ(back[1], 5.0f);
  SafetensorsReader third((dir / "m.safetensors").string());
  third = std::move(second);
  EXPECT_EQ(third.tensors().size(), 1u);
}

struct Malformed {
  const char* what;
  std::string bytes;
  std::string expected;
};

TEST(Safetensors, MalformedFilesAreRejectedWithAReason) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const std::string f32x6(24, '\0');
  const std::vector<Malformed> cases = {
      {"shorter than the length", std::string("\x05\0\0", 3), "truncated: the file has 3 bytes"},
      {"truncated header", safetensors_bytes(std::string(92, ' '), "", 1234),
       "truncated: header says 1234 bytes but the file has 100"},
      {"header length too big", safetensors_bytes("{}", "", uint64_t{1} << 40),
       "header length 1099511627776 is not below the 100000000-byte limit"},
      {"bad JSON", safetensors_bytes(R"({"x": {"dtype": )"), "the header is not valid JSON"},
      {"not an object", safetensors_bytes("[1, 2]"), "the header is a JSON array, expected an object"},
      {"entry not an object", safetensors_bytes(R"({"x": 3})"), "tensor 'x': expected an object"},
      {"missing offsets", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [1]}})"),
       "tensor 'x': missing 'data_offsets'"},
      {"dtype not a string", safetensors_bytes(R"({"x": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", f32x6),
       "tensor 'x': dtype must be a string"},
      {"unknown dtype", safetensors_bytes(R"({"x": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}})", f32x6),
       "tensor 'x': unknown dtype 'F8'"},
      {"negative shape", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", f32x6),
       "tensor 'x': shape [-1] must hold non-negative integers, found -1"},
      {"shape not a list", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": 6, "data_offsets": [0, 24]}})", f32x6),
       "tensor 'x': shape must be an array of integers"},
      {"offsets not a pair", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [6], "data_offsets": [0]}})", f32x6),
       "tensor 'x': data_offsets must be two non-negative integers"},
      {"offsets reversed", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", f32x6),
       "data_offsets [8, 4] end before they begin"},
      {"offsets out of range",
       safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [8, 32]}})", f32x6),
       "tensor 'x': data_offsets [8, 32] reach past the end of the data section (24 bytes)"},
      {"size mismatch", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 12]}})", f32x6),
       "tensor 'x': data_offsets [0, 12] hold 12 bytes but shape [2, 3] of F32 needs 24"},
      {"overlap",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},)"
                         R"( "b": {"dtype": "F32", "shape": [3], "data_offsets": [8, 20]}})", f32x6),
       "tensors 'a' [0, 12] and 'b' [8, 20] overlap"},
      {"duplicate name",
       safetensors_bytes(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                         R"( "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})", f32x6),
       "the header names 'a' twice"},
      {"metadata not strings", safetensors_bytes(R"({"__metadata__": {"step": 5}})"),
       "__metadata__ 'step' must be a string"},
  };
  for (const auto& c : cases) {
    const fs::path path = dir / "model.safetensors";
    write_bytes(path, c.bytes);
    const std::string msg = error_of([&] { SafetensorsReader r(path.string()); });
    EXPECT_CONTAINS(msg, path.string() + ": ") << c.what;
    EXPECT_CONTAINS(msg, c.expected) << c.what;
  }
}

// The tensors must tile the data section exactly, as the reference implementation requires
// (safetensors' Metadata::validate): from byte 0, no gap, no overlap, nothing after the last.
// Each file below is refused by the Python library as well (safetensors 0.8).
TEST(Safetensors, TensorsMustFillTheDataSectionExactly) {
  const ScratchDir scratch;
  const fs::path path = scratch.path / "model.safetensors";
  const std::string x2 = R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  const std::vector<Malformed> cases = {
      {"gap at the start",
       safetensors_bytes(R"({"x": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})", std::string(8, '\1')),
       "bytes 0 to 4 of the data section, before tensor 'x', belong to no tensor"},
      {"gap between tensors",
       safetensors_bytes(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                         R"( "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}})",
                         std::string(12, '\1')),
       "bytes 4 to 8 of the data section, before tensor 'b', belong to no tensor"},
      {"bytes after the last tensor", safetensors_bytes(x2, std::string(12, '\1')),
       "the tensors fill 8 bytes of the data section but it holds 12: 4 bytes after the last tensor"},
      // The fuzzed case: the length field 3 bytes short still parses (only padding is cut), and
      // every tensor would be read 3 bytes early.
      {"header length 3 bytes short", safetensors_bytes(x2 + "   ", std::string(8, '\1'), x2.size()),
       "3 bytes after the last tensor"},
      {"no tensors but data", safetensors_bytes("{}", "1234"), "the tensors fill 0 bytes of the data section but it holds 4"},
  };
  for (const auto& c : cases) {
    write_bytes(path, c.bytes);
    const std::string msg = error_of([&] { SafetensorsReader r(path.string()); });
    EXPECT_CONTAINS(msg, path.string() + ": ") << c.what;
    EXPECT_CONTAINS(msg, c.expected) << c.what;
  }
  // Empty tensors sit anywhere on a boundary, in any header order.
  write_bytes(path, safetensors_bytes(R"({"z": {"dtype": "F32", "shape": [0], "data_offsets": [6, 6]},)"
                                      R"( "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},)"
                                      R"( "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [2, 2]},)"
                                      R"( "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})",
                                      "\x01\x02\x03\x04\x05\x06"));
  SafetensorsReader reader(path.string());
  EXPECT_EQ(reader.data(*reader.find("b"))[3], 6);
}

// tie_word_embeddings: true with a stored lm_head.weight: transformers 5 ties only when the two
// are equal (torch.equal); when they differ it keeps them apart and the logits differ from a
// tied model's, so exatrain refuses instead of tying silently.
TEST(HfImport, StoredLmHeadOfATiedModel) {
  const ScratchDir scratch;
  const fs::path dir = scratch.path;
  const float embed[6] = {1, 2, 3, -4, 0.5f, 0};
  uint16_t embed_bf16[6];
  convert_f32_to(DType::BF16, embed, embed_bf16, 6);
  float other[6] = {1, 2, 3, -4, 0.5f, 0};
  other[4] = 0.25f;
  const float negative_zero[6] = {1, 2, 3, -4, 0.5f, -0.0f};
  auto check = [&](const TensorView& head) {
    write_safetensors((dir / "model.safetensors").string(),
                      {{"model.embed_tokens.weight", DType::F32, {2, 3}, embed}, head});
    check_tied_lm_head(SafetensorsDir(dir.string()));
  };
  check({"lm_head.weight", DType::F32, {2, 3}, embed});          // equal: tied, as transformers does
  check({"lm_head.weight", DType::BF16, {2, 3}, embed_bf16});    // equal values in another dtype
  check({"lm_head.weight", DType::F32, {2, 3}, negative_zero});  // -0 == 0, as torch.equal says
  const std::string file = (dir / "model.safetensors").string();
  for (const TensorView& head : {TensorView{"lm_head.weight", DType::F32, {2, 3}, other},
                                 TensorView{"lm_head.weight", DType::F32, {3, 2}, embed}}) {
    const std::string msg = error_of([&] { check(head); });
    EXPECT_CONTAINS(msg, file + ": config.json says tie_word_embeddings: true, but lm_head.weight is stored and "
                                "differs from model.embed_tokens.weight");
    EXPECT_CONTAINS(msg, "set \"tie_word_embeddings\": false in config.json");
  }
  // No stored lm_head.weight: nothing to compare.
  write_safetensors(file, {{"model.embed_tokens.weight", DType::F32, {2, 3}, embed}});
  check_tied_lm_head(SafetensorsDir(dir.string()));
}

TEST(Safetensors, MissingFileAndDirectoryAreErrors) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  EXPECT_CONTAINS(error_of([&] { SafetensorsReader r((dir / "nope.safetensors").string()); }),
                  "nope.safetensors: cannot open safetensors file: No such file or directory");
  EXPECT_CONTAINS(error_of([&] { SafetensorsReader r(dir.string()); }), "not a regular file");
}

TEST(Safetensors, WriteErrorsNameThePathAndLeaveNoTemporaryFile) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const float x = 1.0f;
  const std::string missing = (dir / "no_such_dir" / "model.safetensors").string();
  const std::string msg = error_of([&] { write_safetensors(missing, {{"x", DType::F32, {}, &x}}); });
  EXPECT_CONTAINS(msg, missing);
  EXPECT_CONTAINS(msg, "No such file or directory");

  const std::string path = (dir / "model.safetensors").string();
  EXPECT_CONTAINS(error_of([&] { write_safetensors(path, {{"x", DType::F32, {}, &x}, {"x", DType::F32, {}, &x}}); }),
                  "tensor 'x': the name is given twice");
  EXPECT_CONTAINS(error_of([&] { write_safetensors(path, {{"x", DType::F32, {-2}, &x}}); }), "negative dimension");
  EXPECT_CONTAINS(error_of([&] { write_safetensors(path, {{"x", DType::F32, {3}, nullptr}}); }), "no data for 12 bytes");
  EXPECT_TRUE(fs::is_empty(dir));  // neither the file nor a temporary one
}

TEST(Safetensors, OverwritesAnExistingFileAtomically) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "model.safetensors").string();
  const float one = 1.0f, two = 2.0f;
  write_safetensors(path, {{"x", DType::F32, {}, &one}});
  write_safetensors(path, {{"y", DType::F32, {}, &two}});
  SafetensorsReader reader(path);
  EXPECT_EQ(reader.find("x"), nullptr);
  ASSERT_NE(reader.find("y"), nullptr);
}

// ---- Hugging Face directories -----------------------------------------------------------------

void write_sharded_dir(const fs::path& dir) {
  const float a[] = {1, 2, 3}, b[] = {4, 5};
  const uint16_t c[] = {0x3F80, 0x4000};
  write_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                    {{"model.a", DType::F32, {3}, a}, {"model.b", DType::F32, {2}, b}});
  write_safetensors((dir / "model-00002-of-00002.safetensors").string(), {{"lm_head.weight", DType::BF16, {2}, c}});
  write_bytes(dir / "model.safetensors.index.json", R"({
    "metadata": {"total_size": 24},
    "weight_map": {
      "model.a": "model-00001-of-00002.safetensors",
      "model.b": "model-00001-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors"
    }})");
}

TEST(SafetensorsDir, ReadsAnIndexAndItsShards) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  write_sharded_dir(dir);
  SafetensorsDir files(dir.string());
  EXPECT_EQ(files.names(), (std::vector<std::string>{"lm_head.weight", "model.a", "model.b"}));
  const SafetensorsReader* file = nullptr;
  const TensorInfo* info = files.find("lm_head.weight", &file);
  ASSERT_NE(info, nullptr);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->path(), (dir / "model-00002-of-00002.safetensors").string());
  float out[2];
  convert_to_f32(info->dtype, file->data(*info), out, 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
  const SafetensorsReader* file_a = nullptr;
  const SafetensorsReader* file_b = nullptr;
  ASSERT_NE(files.find("model.a", &file_a), nullptr);
  ASSERT_NE(files.find("model.b", &file_b), nullptr);
  EXPECT_EQ(file_a, file_b);  // one shard, opened once
  EXPECT_EQ(files.find("nope"), nullptr);
  EXPECT_EQ(files.describe_location("model.b"), (dir / "model-00001-of-00002.safetensors").string());
  EXPECT_EQ(files.describe_location("nope"), "not in " + dir.string());
}

TEST(SafetensorsDir, ReadsASingleFile) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  const float a[] = {1, 2};
  write_safetensors((dir / "model.safetensors").string(), {{"w", DType::F32, {2}, a}});
  SafetensorsDir files(dir.string());
  EXPECT_EQ(files.names(), std::vector<std::string>{"w"});
  EXPECT_EQ(files.describe_location("w"), (dir / "model.safetensors").string());
}

TEST(SafetensorsDir, ProblemsNameTheIndexAndTheShard) {
  const ScratchDir scratch;
  const fs::path& dir = scratch.path;
  EXPECT_CONTAINS(error_of([&] { SafetensorsDir d(dir.string()); }),
                  dir.string() + ": no model.safetensors or model.safetensors.index.json");

  write_sharded_dir(dir);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  std::string msg = error_of([&] { SafetensorsDir d(dir.string()); });
  EXPECT_CONTAINS(msg, "model.safetensors.index.json");
  EXPECT_CONTAINS(msg, (dir / "model-00002-of-00002.safetensors").string() + " does not exist");

  write_bytes(dir / "model.safetensors.index.json",
              R"({"weight_map": {"model.z": "model-00001-of-00002.safetensors"}})");
  EXPECT_CONTAINS(error_of([&] { SafetensorsDir d(dir.string()); }),
                  "weight_map puts 'model.z' in " + (dir / "model-00001-of-00002.safetensors").string() +
                      ", but that file has no such tensor");

  write_bytes(dir / "model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_CONTAINS(error_of([&] { SafetensorsDir d(dir.string()); }), "expected an object with a 'weight_map'");
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map": {"model.a": 1}})");
  EXPECT_CONTAINS(error_of([&] { SafetensorsDir d(dir.string()); }), "weight_map['model.a'] must be a file name");
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map": )");
  EXPECT_CONTAINS(error_of([&] { SafetensorsDir d(dir.string()); }), "model.safetensors.index.json: invalid JSON");
}

// ---- floating-point conversion --------------------------------------------------------------

TEST(Conversion, Bf16BitPatterns) {
  EXPECT_EQ(f32_to_bf16_bits(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16_bits(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16_bits(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16_bits(-0.0f), 0x8000);
  // Halfway cases round to the even neighbour; just above halfway rounds up.
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x3F808000)), 0x3F80);
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x3F818000)), 0x3F82);
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x3F808001)), 0x3F81);
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x3F807FFF)), 0x3F80);
  EXPECT_EQ(f32_to_bf16_bits(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16_bits(-INFINITY), 0xFF80);
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x7F7FFFFF)), 0x7F80);  // largest float rounds up to inf
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x7FC00000)), 0x7FC0);
  EXPECT_EQ(f32_to_bf16_bits(float_of(0xFFC00000)), 0xFFC0);
  // A NaN whose payload sits only in the dropped bits must not become inf.
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x7F800001)), 0x7FC0);
  EXPECT_EQ(bf16_bits_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_bits_to_f32(0xC049), float_of(0xC0490000));
  EXPECT_TRUE(std::isnan(bf16_bits_to_f32(0x7FC1)));
}

TEST(Conversion, F16BitPatterns) {
  EXPECT_EQ(f32_to_f16_bits(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16_bits(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16_bits(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16_bits(0.1f), 0x2E66);
  EXPECT_EQ(f32_to_f16_bits(65504.0f), 0x7BFF);  // largest finite
  EXPECT_EQ(f32_to_f16_bits(65519.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7C00);  // halfway to 65536: even is the inf pattern
  EXPECT_EQ(f32_to_f16_bits(1e6f), 0x7C00);
  EXPECT_EQ(f32_to_f16_bits(-INFINITY), 0xFC00);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: even (1). 1 + 3*2^-11: even is 0x3C02.
  EXPECT_EQ(f32_to_f16_bits(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(f32_to_f16_bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(f32_to_f16_bits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  // Subnormals: units of 2^-24.
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -25)), 0x0000);      // halfway to 2^-24: even is 0
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(3.0f, -25)), 0x0002);      // 1.5 units: even is 2
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(5.0f, -25)), 0x0002);      // 2.5 units: even is 2
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1023.5f, -24)), 0x0400);   // rounds up into the normals
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(f32_to_f16_bits(-std::ldexp(1.0f, -24)), 0x8001);
  EXPECT_EQ(f32_to_f16_bits(NAN) & 0x7E00, 0x7E00);
  EXPECT_EQ(f32_to_f16_bits(float_of(0x7F800001)), 0x7E00);  // payload below f16's bits: still NaN

  EXPECT_EQ(f16_bits_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_bits_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_bits_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_bits_to_f32(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_bits_to_f32(0x7C00), INFINITY);
  EXPECT_EQ(f16_bits_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::signbit(f16_bits_to_f32(0x8000)));
  EXPECT_TRUE(std::isnan(f16_bits_to_f32(0x7E00)));
}

// Every 16-bit pattern survives a trip through fp32 (NaNs stay NaN).
TEST(Conversion, EveryHalfPatternRoundTrips) {
  for (uint32_t b = 0; b <= 0xFFFF; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    const float f16 = f16_bits_to_f32(bits), bf16 = bf16_bits_to_f32(bits);
    if (std::isnan(f16)) EXPECT_TRUE(std::isnan(f16_bits_to_f32(f32_to_f16_bits(f16)))) << b;
    else EXPECT_EQ(f32_to_f16_bits(f16), bits) << b;
    if (std::isnan(bf16)) EXPECT_TRUE(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(bf16)))) << b;
    else EXPECT_EQ(f32_to_bf16_bits(bf16), bits) << b;
  }
}

TEST(Conversion, BulkConversionAndUnsupportedDtypes) {
  const std::vector<float> src = {1.0f, -2.0f, 0.5f};
  std::vector<uint16_t> half(3);
  convert_f32_to(DType::BF16, src.data(), half.data(), 3);
  EXPECT_EQ(half, (std::vector<uint16_t>{0x3F80, 0xC000, 0x3F00}));
  std::vector<float> back(3);
  convert_to_f32(DType::BF16, half.data(), back.data(), 3);
  EXPECT_EQ(back, src);
  convert_f32_to(DType::F16, src.data(), half.data(), 3);
  EXPECT_EQ(half, (std::vector<uint16_t>{0x3C00, 0xC000, 0x3800}));
  convert_to_f32(DType::F16, half.data(), back.data(), 3);
  EXPECT_EQ(back, src);
  const double f64[] = {0.1, -1e40};
  convert_to_f32(DType::F64, f64, back.data(), 2);
  EXPECT_EQ(back[0], 0.1f);
  EXPECT_EQ(back[1], -INFINITY);
  convert_f32_to(DType::F32, src.data(), back.data(), 3);
  EXPECT_EQ(back, src);

  const int32_t ints[] = {1};
  EXPECT_CONTAINS(error_of([&] { convert_to_f32(DType::I32, ints, back.data(), 1); }),
                  "cannot read dtype I32 as floating point");
  EXPECT_CONTAINS(error_of([&] { convert_f32_to(DType::I64, src.data(), back.data(), 1); }),
                  "cannot write floating point as dtype I64");
}

}  // namespace
}  // namespace exatrain
