// exatrain tokenizer encode --tokenizer T [--input FILE] [--threads N] [--json] [--add-special-tokens]
// exatrain tokenizer decode --tokenizer T [--input FILE] [--json] [--skip-special-tokens]
// exatrain tokenizer bench  --tokenizer T FILES... [--threads N] [--repeat K]
// exatrain tokenizer info   --tokenizer T
//
// Line-based: encode reads one text per line ('\n' ends a line and is not part of the text; a
// '\r' before it is) and writes one line of space-separated ids; decode does the reverse. With
// --json each line is a JSON string instead, so texts may hold newlines.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer/tokenizer.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"

namespace exatrain {

namespace {

struct Options {
  std::string tokenizer;
  std::string input;
  std::vector<std::string> files;
  int threads = 0;
  int repeat = 3;
  bool json = false;
  bool add_special_tokens = false;
  bool skip_special_tokens = false;
};

// Reads a file (or stdin for "" / "-") in blocks of whole lines.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : name_(path.empty() || path == "-" ? "<stdin>" : path) {
    if (path.empty() || path == "-") {
      file_ = stdin;
    } else {
      file_ = std::fopen(path.c_str(), "rb");
      if (!file_) fail("{}: cannot open for reading", path);
      owned_ = true;
    }
  }
  ~LineReader() {
    if (owned_) std::fclose(file_);
  }
  const std::string& name() const { return name_; }
  size_t first_line_number() const { return first_line_; }

  // Fills `lines` with the next block (views into an internal buffer valid until the next call);
  // false at the end of the input.
  bool next_block(std::vector<std::string_view>& lines) {
    lines.clear();
    first_line_ = next_line_;
    buffer_.erase(0, consumed_);
    consumed_ = 0;
    constexpr size_t kBlock = size_t(4) << 20;
    while (!eof_) {
      size_t old = buffer_.size();
      buffer_.resize(old + kBlock);
      size_t got = std::fread(buffer_.data() + old, 1, kBlock, file_);
      buffer_.resize(old + got);
      if (got < kBlock) {
        if (std::ferror(file_)) fail("{}: read error", name_);
        eof_ = true;
      }
      if (buffer_.find('\n', old) != std::string::npos) break;
    }
    size_t end = eof_ ? buffer_.size() : buffer_.rfind('\n') + 1;
    std::string_view data(buffer_.data(), end);
    size_t pos = 0;
    while (pos < data.size()) {
      size_t nl = data.find('\n', pos);
      if (nl == std::string_view::npos) nl = data.size();  // the last line, without a newline
      lines.push_back(data.substr(pos, nl - pos));
      pos = nl + 1;
    }
    consumed_ = end;
    next_line_ += lines.size();
    return !lines.empty();
  }

 private:
  std::string name_;
  FILE* file_ = nullptr;
  bool owned_ = false;
  bool eof_ = false;
  std::string buffer_;
  size_t consumed_ = 0;
  size_t first_line_ = 1, next_line_ = 1;
};

void write_out(const std::string& text) {
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) fail("cannot write to stdout");
}

void append_ids(const std::vector<uint32_t>& ids, std::string& out) {
  char digits[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(' ');
    auto result = std::to_chars(digits, digits + sizeof digits, ids[i]);
    out.append(digits, result.ptr);
  }
  out.push_back('\n');
}

void run_encode(const Options& o) {
  Tokenizer tokenizer = Tokenizer::from_file(o.tokenizer);
  Tokenizer::BatchEncoder batch(tokenizer, o.threads);
  LineReader reader(o.input);
  std::vector<std::string_view> lines;
  std::vector<std::string> decoded;  // --json: the texts the lines hold
  std::vector<std::string_view> texts;
  std::vector<std::vector<uint32_t>> ids;
  std::string out;
  while (reader.next_block(lines)) {
    if (o.json) {
      decoded.resize(lines.size());
      texts.resize(lines.size());
      for (size_t i = 0; i < lines.size(); ++i) {
        nlohmann::json value;
        try {
          value = nlohmann::json::parse(lines[i]);
        } catch (const nlohmann::json::exception& e) {
          fail("{}:{}: not a JSON string: {}", reader.name(), reader.first_line_number() + i, e.what());
        }
        if (!value.is_string()) fail("{}:{}: expected a JSON string", reader.name(), reader.first_line_number() + i);
        decoded[i] = value.get<std::string>();
        texts[i] = decoded[i];
      }
      batch.encode(texts, ids, o.add_special_tokens);
    } else {
      batch.encode(lines, ids, o.add_special_tokens);
    }
    out.clear();
    for (const auto& line_ids : ids) append_ids(line_ids, out);
    write_out(out);
  }
  std::fflush(stdout);
  EncodeStats stats = batch.stats();
  if (stats.invalid_utf8_sequences > 0) {
    log_warn("{}: {} invalid UTF-8 sequence(s) in {} line(s) were replaced by U+FFFD before encoding", reader.name(),
             stats.invalid_utf8_sequences, stats.texts_with_invalid_utf8);
  }
}

void run_decode(const Options& o) {
  Tokenizer tokenizer = Tokenizer::from_file(o.tokenizer);
  LineReader reader(o.input);
  std::vector<std::string_view> lines;
  std::vector<uint32_t> ids;
  std::string out;
  uint64_t unknown = 0;
  while (reader.next_block(lines)) {
    out.clear();
    for (size_t i = 0; i < lines.size(); ++i) {
      ids.clear();
      std::string_view line = lines[i];
      size_t pos = 0;
      while (pos < line.size()) {
        if (line[pos] == ' ' || line[pos] == '\t' || line[pos] == '\r') {
          ++pos;
          continue;
        }
        uint32_t id = 0;
        auto [end, ec] = std::from_chars(line.data() + pos, line.data() + line.size(), id);
        size_t stop = size_t(end - line.data());
        if (ec != std::errc() || (stop < line.size() && line[stop] != ' ' && line[stop] != '\t' && line[stop] != '\r')) {
          size_t word_end = line.find_first_of(" \t\r", pos);
          fail("{}:{}: {:?} is not a token id (0..4294967295)", reader.name(), reader.first_line_number() + i,
               std::string(line.substr(pos, word_end == std::string_view::npos ? line.size() - pos : word_end - pos)));
        }
        if (!tokenizer.id_to_token(id)) ++unknown;
        ids.push_back(id);
        pos = stop;
      }
      std::string text = tokenizer.decode(ids, o.skip_special_tokens);
      if (o.json) {
        out += nlohmann::json(text).dump();
      } else {
        out += text;
      }
      out.push_back('\n');
    }
    write_out(out);
  }
  std::fflush(stdout);
  if (unknown > 0) log_warn("{}: {} id(s) not in the vocabulary were dropped, as tokenizers drops them", reader.name(), unknown);
}

void run_bench(const Options& o) {
  Tokenizer tokenizer = Tokenizer::from_file(o.tokenizer);
  std::vector<std::string> contents;
  std::vector<std::string_view> lines;
  uint64_t bytes = 0;
  for (const auto& path : o.files) {
    LineReader reader(path);
    std::vector<std::string_view> block;
    std::string all;
    while (reader.next_block(block)) {
      for (auto line : block) {
        all.append(line);
        all.push_back('\n');
      }
    }
    contents.push_back(std::move(all));
  }
  for (const auto& all : contents) {
    std::string_view data(all);
    size_t pos = 0;
    while (pos < data.size()) {
      size_t nl = data.find('\n', pos);
      lines.push_back(data.substr(pos, nl - pos));
      bytes += nl - pos;
      pos = nl + 1;
    }
  }
  Tokenizer::BatchEncoder batch(tokenizer, o.threads);
  std::vector<std::vector<uint32_t>> ids;
  std::vector<double> seconds;
  uint64_t tokens = 0;
  for (int r = 0; r < std::max(1, o.repeat); ++r) {
    auto start = std::chrono::steady_clock::now();
    batch.encode(lines, ids);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    tokens = 0;
    for (const auto& v : ids) tokens += v.size();
  }
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  double median = sorted[sorted.size() / 2];
  nlohmann::json result = {
      {"tokenizer", o.tokenizer},   {"files", o.files},        {"lines", lines.size()},
      {"bytes", bytes},             {"tokens", tokens},        {"threads", batch.threads()},
      {"seconds", seconds},         {"median_seconds", median}, {"mb_per_s", double(bytes) / median / 1e6},
      {"first_pass_mb_per_s", double(bytes) / seconds[0] / 1e6}};
  std::printf("%s\n", result.dump().c_str());
}

void run_info(const Options& o) {
  Tokenizer tokenizer = Tokenizer::from_file(o.tokenizer);
  std::printf("file: %s\nsha256: %s\nvocab_size: %u (largest id + 1)\n%s", o.tokenizer.c_str(),
              tokenizer.content_sha256().c_str(), tokenizer.vocab_size(), tokenizer.describe().c_str());
}

void register_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "Encode and decode with a Hugging Face tokenizer.json (byte-level BPE)");
  cmd->require_subcommand(1);
  static Options o;
  auto add_tokenizer = [](CLI::App* sub) {
    sub->add_option("--tokenizer", o.tokenizer, "tokenizer.json")->required();
  };

  auto* encode = cmd->add_subcommand("encode", "Text to ids: one line in, one line of space-separated ids out");
  add_tokenizer(encode);
  encode->add_option("--input", o.input, "input file (default: stdin)");
  encode->add_option("--threads", o.threads, "encoding threads (0: all cores)")->check(CLI::NonNegativeNumber);
  encode->add_flag("--json", o.json, "each input line is a JSON string (texts with newlines)");
  encode->add_flag("--add-special-tokens", o.add_special_tokens,
                   "apply the post-processor's template (as tokenizers' add_special_tokens=True)");
  encode->callback([] {
    setup_logging("info", 0);
    run_encode(o);
  });

  auto* decode = cmd->add_subcommand("decode", "Ids to text: one line of space-separated ids in, one line of text out");
  add_tokenizer(decode);
  decode->add_option("--input", o.input, "input file (default: stdin)");
  decode->add_flag("--json", o.json, "write each text as a JSON string (texts with newlines)");
  decode->add_flag("--skip-special-tokens", o.skip_special_tokens, "leave out special tokens");
  decode->callback([] {
    setup_logging("info", 0);
    run_decode(o);
  });

  auto* bench = cmd->add_subcommand("bench", "Encode speed (MB/s) over the lines of FILES; prints one JSON line");
  add_tokenizer(bench);
  bench->add_option("FILES", o.files, "text files")->required()->check(CLI::ExistingFile);
  bench->add_option("--threads", o.threads, "encoding threads (0: all cores)")->check(CLI::NonNegativeNumber);
  bench->add_option("--repeat", o.repeat, "timed passes over the files (the median is reported)")
      ->check(CLI::PositiveNumber);
  bench->callback([] {
    setup_logging("info", 0);
    run_bench(o);
  });

  auto* info = cmd->add_subcommand("info", "Components, vocabulary size and sha256 of a tokenizer.json");
  add_tokenizer(info);
  info->callback([] {
    setup_logging("info", 0);
    run_info(o);
  });
}

CommandRegistration registration("tokenizer", 60, register_tokenizer_command);

}  // namespace

}  // namespace exatrain
