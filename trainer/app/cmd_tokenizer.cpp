// exatrain tokenizer encode --tokenizer T [--input FILE] [--threads N] [--json] [--add-special-tokens]
// exatrain tokenizer decode --tokenizer T [--input FILE] [--json] [--skip-special-tokens]
// exatrain tokenizer bench  --tokenizer T FILES... [--threads N] [--repeat K]
// exatrain tokenizer info   --tokenizer T
// exatrain tokenizer train  --vocab-size N [--special-tokens A,B,...] [--min-frequency F] [--threads T]
//                           [--max-words W] [--normalizer nfc|none] [--eos-token TOKEN] --output tokenizer.json FILES...
//
// Line-based: encode reads one text per line ('\n' ends a line and is not part of the text; a
// '\r' before it is) and writes one line of space-separated ids; decode does the reverse. With
// --json each line is a JSON string instead, so texts may hold newlines.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer/bpe_trainer.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/app/commands.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"
#include "trainer/core/json_error.h"
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
  // train
  uint32_t vocab_size = 0;
  std::vector<std::string> special_tokens;
  uint64_t min_frequency = 0;
  uint64_t max_words = BpeTrainerOptions{}.max_words;
  std::string normalizer = "nfc";
  std::string eos_token;
  std::string output;
  bool no_progress = false;
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
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size())
    fail("cannot write to standard output: {}", std::strerror(errno));
}

// Before the warnings on stderr, so that the two streams appear in order on a terminal.
void flush_out() {
  if (std::fflush(stdout) != 0) fail("cannot write to standard output: {}", std::strerror(errno));
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
          fail("{}:{}: not a JSON string: {}", reader.name(), reader.first_line_number() + i,
               json_error_text(e, lines[i]));
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
  flush_out();
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
  flush_out();
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

// A progress bar on stderr when it is a terminal (redrawn at most 10 times a second), otherwise a
// log line every 10 seconds; one per stage ("count words", "merges").
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled)
      : enabled_(enabled), tty_(::isatty(::fileno(stderr)) == 1), stage_start_(std::chrono::steady_clock::now()) {}
  ~ProgressBar() { finish_line(); }

  void update(std::string_view stage, uint64_t done, uint64_t total) {
    if (!enabled_) return;
    if (stage != stage_) {  // a stage starts when the previous one finished (or at construction)
      if (drawn_) finish_line();
      stage_ = std::string(stage);
      last_draw_ = {};
      last_done_ = last_total_ = 0;
    }
    const auto now = std::chrono::steady_clock::now();
    const bool complete = total > 0 && done >= total;
    if (done == last_done_ && total == last_total_) return;
    const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
    if (!complete && since_draw < (tty_ ? 0.1 : 10.0)) return;
    last_draw_ = now;
    last_done_ = done;
    last_total_ = total;
    const double fraction = total ? std::min(1.0, double(done) / double(total)) : 0.0;
    const double seconds = std::chrono::duration<double>(now - stage_start_).count();
    std::string amount = stage_ == "count words"
                             ? fmt::format("{:.1f}/{:.1f} MB, {:.1f} MB/s", done / 1e6, total / 1e6,
                                           seconds > 0 ? done / 1e6 / seconds : 0.0)
                             : fmt::format("{}/{} tokens", done, total);
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = int(fraction * kWidth);
      std::fprintf(stderr, "\r%-12s [%s%s] %3d%% %s %s   ", stage_.c_str(), std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, '.').c_str(), int(fraction * 100), amount.c_str(),
                   format_duration(seconds).c_str());
      std::fflush(stderr);
      drawn_ = true;
    } else {
      log_info("tokenizer train: {} {:.0f}% ({}, {})", stage_, fraction * 100, amount, format_duration(seconds));
    }
  }
  // Ends the current stage.
  void finish_line() {
    if (drawn_) std::fputc('\n', stderr);
    drawn_ = false;
    stage_start_ = std::chrono::steady_clock::now();
  }

 private:
  bool enabled_, tty_;
  bool drawn_ = false;
  std::string stage_;
  uint64_t last_done_ = 0, last_total_ = 0;
  std::chrono::steady_clock::time_point stage_start_, last_draw_;
};

// The special token named `name` if it is among the specials, else "".
std::string special_if_present(const std::vector<std::string>& specials, const std::string& name) {
  return std::find(specials.begin(), specials.end(), name) != specials.end() ? name : std::string();
}

void run_train(const Options& o, bool specials_given) {
  const auto start = std::chrono::steady_clock::now();
  BpeTrainerOptions t;
  t.vocab_size = o.vocab_size;
  if (specials_given) {
    t.special_tokens.clear();
    for (const auto& s : o.special_tokens) {
      if (!s.empty()) t.special_tokens.push_back(s);  // --special-tokens '' means none
    }
  }
  t.min_frequency = o.min_frequency;
  t.threads = o.threads;
  t.max_words = o.max_words;
  t.nfc = o.normalizer == "nfc";
  validate_trainer_options(t);

  // The end-of-document token `exatrain data prepare` reads from tokenizer_config.json.
  std::string eos = o.eos_token;
  if (!eos.empty() && special_if_present(t.special_tokens, eos).empty()) {
    std::string names;
    for (const auto& s : t.special_tokens) names += (names.empty() ? "" : ", ") + s;
    fail("tokenizer train: --eos-token '{}' is not one of the special tokens ({}); add it to --special-tokens", eos,
         names);
  }
  if (eos.empty()) eos = special_if_present(t.special_tokens, "[|endofturn|]");
  if (eos.empty())
    log_warn("tokenizer train: no end-of-document token ([|endofturn|] is not among the special tokens and no "
             "--eos-token): `exatrain data prepare` will need --eos");
  const std::string bos = special_if_present(t.special_tokens, "[BOS]");
  const std::string pad = special_if_present(t.special_tokens, "[PAD]");

  const std::filesystem::path output(o.output);
  const std::string config_path = (output.parent_path() / "tokenizer_config.json").string();
  if (std::filesystem::path(o.output).filename() == "tokenizer_config.json")
    fail("tokenizer train: --output must not be named tokenizer_config.json (that file is written next to it)");
  check_output_writable(o.output);

  const auto count_start = std::chrono::steady_clock::now();
  ProgressBar bar(!o.no_progress);
  t.progress = [&bar](std::string_view stage, uint64_t done, uint64_t total) { bar.update(stage, done, total); };
  WordCountStats stats;
  WordCounts words = count_words(o.files, t, &stats);
  bar.finish_line();
  const double count_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - count_start).count();
  log_info("tokenizer train: {} file(s), {:.1f} MB, {} lines: {} pre-tokens, {} distinct words in {:.2f}s ({:.1f} MB/s)",
           stats.files, stats.bytes / 1e6, stats.lines, stats.pre_tokens, words.size(), count_seconds,
           stats.bytes / 1e6 / std::max(count_seconds, 1e-9));
  if (stats.special_tokens_skipped)
    log_info("tokenizer train: {} special token(s) found in the text were left out of the counts",
             stats.special_tokens_skipped);
  if (stats.invalid_utf8_sequences)
    log_warn("tokenizer train: {} invalid UTF-8 sequence(s) were replaced by U+FFFD", stats.invalid_utf8_sequences);
  if (stats.long_lines_cut)
    log_warn("tokenizer train: {} line(s) longer than 8 MB were counted in 8 MB pieces", stats.long_lines_cut);
  if (stats.prunes)
    log_warn("tokenizer train: the word table was pruned {} time(s) ({} words dropped, each seen at most {} times): "
             "the result is approximate; raise --max-words (memory permitting) for an exact one",
             stats.prunes, stats.words_pruned, stats.max_count_pruned);

  const auto merge_start = std::chrono::steady_clock::now();
  TrainedBpe bpe = train_bpe(words, t);
  bar.finish_line();
  words = WordCounts{};
  const double merge_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - merge_start).count();
  if (bpe.vocab.size() < t.vocab_size)
    log_warn("tokenizer train: stopped at {} tokens (asked for {}): no pair is seen {} time(s) any more",
             bpe.vocab.size(), t.vocab_size, std::max<uint64_t>(1, t.min_frequency));

  const std::string json = trained_tokenizer_json(bpe, t);
  Tokenizer::from_json(json, o.output);  // what we write must load
  write_file_atomically(o.output, json);
  write_file_atomically(config_path, trained_tokenizer_config_json(bpe, bos, eos, pad));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log_info("tokenizer train: wrote {} ({} tokens: {} special, 256 bytes, {} merges) and {}; merges took {:.2f}s, {:.2f}s "
           "in all",
           o.output, bpe.vocab.size(), bpe.special_tokens.size(), bpe.merges.size(), config_path, merge_seconds, seconds);
}

void register_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "Encode, decode and train Hugging Face tokenizer.json files (byte-level BPE)");
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

  auto* train = cmd->add_subcommand(
      "train",
      "Learn a byte-level BPE tokenizer.json from text files, with exactly the vocabulary and merges of the "
      "`tokenizers` library's BpeTrainer (see docs/tokenizer.md)");
  train->add_option("--vocab-size", o.vocab_size, "vocabulary size, special tokens and the 256 bytes included")
      ->required()
      ->check(CLI::PositiveNumber);
  auto* specials = train->add_option("--special-tokens", o.special_tokens,
                                     "special tokens, ids 0.. in this order (comma-separated or repeated; '' for "
                                     "none). Default: [PAD],[BOS],[|endofturn|],[|system|],[|user|],[|assistant|],"
                                     "[|tool|],<think>,</think>")
                       ->delimiter(',');
  train->add_option("--min-frequency", o.min_frequency, "stop when the best pair is seen fewer times (default 0)");
  train->add_option("--threads", o.threads, "word-counting threads (0: all cores)")->check(CLI::NonNegativeNumber);
  train->add_option("--max-words", o.max_words,
                    "distinct words kept while counting; beyond it the rarest are pruned and the result is no longer "
                    "exact (0: no limit)")
      ->capture_default_str();
  train->add_option("--normalizer", o.normalizer, "nfc (as Qwen3) or none")
      ->check(CLI::IsMember({"nfc", "none"}))
      ->capture_default_str();
  train->add_option("--eos-token", o.eos_token,
                    "end-of-document token written to tokenizer_config.json (default: [|endofturn|] if it is a "
                    "special token)");
  train->add_option("--output", o.output, "the tokenizer.json to write (tokenizer_config.json is written next to it)")
      ->required();
  train->add_flag("--no-progress", o.no_progress, "no progress bar");
  train->add_option("FILES", o.files, "UTF-8 text files, read line by line")->required();
  train->callback([specials] {
    setup_logging("info", 0);
    run_train(o, specials->count() > 0);
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
