# Homebrew formula for paperclipd (macOS and Linux).
# Install: brew install --build-from-source packaging/homebrew/paperclipd.rb
class Paperclipd < Formula
  desc "Run a Paperclip instance as a trustworthy service: one server, ready when it truly is"
  homepage "https://www.npmjs.com/package/paperclipai"
  url "https://github.com/paperclipai/paperclipd/archive/refs/tags/v0.1.0.tar.gz"
  version "0.1.0"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/paperclipai/paperclipd.git", branch: "main"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    generate_completions_from_executable(bin/"paperclipd", "completions")
    (buildpath/"paperclipd.1").write Utils.safe_popen_read(bin/"paperclipd", "manpage")
    man1.install "paperclipd.1"
  end

  def caveats
    <<~EOS
      Run your Paperclip instance as a LaunchAgent (returns once it is ready):
        paperclipd install --now
        paperclipd status
      Agents that work in ~/Documents, ~/Desktop or ~/Downloads need Full Disk
      Access for the job itself (not for Terminal): System Settings → Privacy &
      Security → Full Disk Access → add #{opt_bin}/paperclipd, then
        paperclipd restart
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/paperclipd --version")
    # Nothing listens on this port: not ready (exit 1) and no HTTP request.
    output = shell_output("#{bin}/paperclipd probe --url http://127.0.0.1:9 2>&1", 1)
    assert_match "not ready", output
  end
end
