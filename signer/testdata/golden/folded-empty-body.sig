DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=rsa;
	t=1767323045; h=From:From:To:To:Cc:Subject:Subject:Date:Message-ID:
	Reply-To:In-Reply-To:References:MIME-Version:Content-Type:
	Content-Transfer-Encoding:List-Unsubscribe:List-Unsubscribe-Post;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;
	b=S/66NiddKr2RuDJm/z/yDZhkPdoo9wBToj6UPGtpfVSGItsY/DFbAiCJ/bchcmVSW1l
	PFBrkNedRfxalSS84sht2J6oz2s3SGeSLSX6+TjqItDvW6F0ZTmG1VRzBMRDfnjDWj8q2q
	WHe3MlBMpPuUTS7qz1aEIYgG/wobjm3gUFbaFH9XoQCopGTXorK5j6lxoyWnHGuG5wJhz+
	SsWgI76yhCMaRYQUv+UP2vwBGRHb+cNdjQGwAs8duFqjH3sgFxYc+I8Z4iD+CrT6MPqvRq
	R6gYlC3XNOAIWz86/B2LVN1mcOKO769dI+AX7PTjURIcuwbJ9kurlBio/q6QqfgCg==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; s=ed;
	t=1767323045; h=From:From:To:To:Cc:Subject:Subject:Date:Message-ID:
	Reply-To:In-Reply-To:References:MIME-Version:Content-Type:
	Content-Transfer-Encoding:List-Unsubscribe:List-Unsubscribe-Post;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;
	b=AKP/cE51rj0anmQTinUvRo2B4q1xTNvpG8J2RrXHD7X6cXtocmKPgoj+DVvNOI9cU2+
	3dwPwADD2qvx4CKIxDQ==
