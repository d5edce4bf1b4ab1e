DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=rsa;
	t=1767323045; h=From:From:To:To:Cc:Subject:Subject:Date:Date:
	Message-ID:Message-ID:Reply-To:In-Reply-To:References:MIME-Version:
	MIME-Version:Content-Type:Content-Type:Content-Transfer-Encoding:
	Content-Transfer-Encoding;
	bh=o+H0SwYj2X3S1U+gSXGNu0L/oUoDlhYrr3iFWBZHlR0=;
	b=nAOpm0Frn/9/6Urr3xf/Ey1eYcjlvYYpTOiDSFJ+y0IehYp6q3qgd4cnSBN0Cm1Kyxn
	xOOogiNaz6ISvRRKOXyIowbf406wmhvGcp2GH+BYP1dGcd2gzy/wuT6y3w3oMD9kxKj3aq
	Ly6SY955Xxf13DDyju4yJCemE0m+14eBqsZOCHTcDaqJJH7Y1Be7TTPSL01FEFWNjN3yXk
	E4lCbZK+aHGS3LyBW7wroy9AY6pIFrh1Z1i1o4okl84abmvsS1tahGEGFjGXu1ZS+Wz1h6
	x/QHVs+6trg1v+o3SAXEnm4UFFYI1MyMGZu9oktsK+u3s4a4ypbQ6pmFfos1NpD7Q==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; s=ed;
	t=1767323045; h=From:From:To:To:Cc:Subject:Subject:Date:Date:
	Message-ID:Message-ID:Reply-To:In-Reply-To:References:MIME-Version:
	MIME-Version:Content-Type:Content-Type:Content-Transfer-Encoding:
	Content-Transfer-Encoding;
	bh=o+H0SwYj2X3S1U+gSXGNu0L/oUoDlhYrr3iFWBZHlR0=;
	b=MQGW351P60iUOQhMcmcUc1nlI02d6e1m8VB/mwRpXPHvp5QT47jSx6U66zPx3OTJndE
	1Pb+bv21181V5ek3+CQ==
