# Homebrew formula for paperclipd (macOS and Linux): installs the release
# archive of packaging/npm/build.sh for this OS and CPU; `--HEAD` builds
# from source instead. packaging/npm/build.sh renders this file with the
# archives' sha256 into OUT/dist/paperclipd.rb (the @…@ placeholders).
# Install: brew install OUT/dist/paperclipd.rb
class Paperclipd < Formula
  desc "Run a Paperclip instance as a trustworthy service: one server, ready when it truly is"
  homepage "https://www.npmjs.com/package/paperclipd"
  version "0.1.0"
  license any_of: ["MIT", "Apache-2.0"]

  RELEASE = "https://github.com/paperclipai/paperclipd/releases/download/v0.1.0".freeze
  on_macos do
    on_arm do
      url "#{RELEASE}/paperclipd-0.1.0-aarch64-apple-darwin.tar.gz"
      sha256 "@SHA256_aarch64-apple-darwin@"
    end
    on_intel do
      url "#{RELEASE}/paperclipd-0.1.0-x86_64-apple-darwin.tar.gz"
      sha256 "@SHA256_x86_64-apple-darwin@"
    end
  end
  on_linux do
    on_arm do
      url "#{RELEASE}/paperclipd-0.1.0-aarch64-unknown-linux-musl.tar.gz"
      sha256 "@SHA256_aarch64-unknown-linux-musl@"
    end
    on_intel do
      url "#{RELEASE}/paperclipd-0.1.0-x86_64-unknown-linux-musl.tar.gz"
      sha256 "@SHA256_x86_64-unknown-linux-musl@"
    end
  end

  head do
    url "https://github.com/paperclipai/paperclipd.git", branch: "main"
    depends_on "rust" => :build
  end

  def install
    if build.head?
      system "cargo", "install", *std_cargo_args
      generate_completions_from_executable(bin/"paperclipd", "completions")
      (buildpath/"paperclipd.1").write Utils.safe_popen_read(bin/"paperclipd", "manpage")
      man1.install "paperclipd.1"
    else
      bin.install "paperclipd"
      man1.install "paperclipd.1.gz"
      bash_completion.install "completions/paperclipd.bash" => "paperclipd"
      zsh_completion.install "completions/_paperclipd"
      fish_completion.install "completions/paperclipd.fish"
    end
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
